// Command go-oracle is the Go side of the gateway's differential test (the Rust test
// `go_oracle` in gateway/src/decision/go_oracle.rs): it decodes answers exactly as OpenIM's
// Go code does, with encoding/json into the answer struct of each before-command.
//
// Input, one JSON object per line:
//
//	{"command": "callbackBeforeSetGroupInfoCommand", "answer": "<the answer's bytes, as a JSON string>"}
//
// Output, one JSON object per line, in the same order:
//
//	{"decodes": true, "error": "", "refuses": false, "nextCode": 0, "content": null}
//
// decodes: json.Unmarshal(answer, &resp) succeeded, as in pkg/common/webhook/http_client.go
// `post`. refuses: it did, and CommonCallbackResp.Parse refuses (actionCode 0, nextCode 1);
// nextCode: the decoded nextCode.
// content (callbackBeforeMsgModifyCommand only, when the answer decodes, does not refuse and
// sets content): whether json.Unmarshal([]byte(*resp.Content), &struct{}{}) succeeds, the
// check internal/rpc/msg/callback.go makes before it lets the modified message through.
//
// The structs below are written for this test from the field types and JSON tags of
// openimsdk/open-im-server's pkg/callbackstruct (main; v3.7.1 for the older command names)
// and of openimsdk/protocol's sdkws and wrapperspb. Standard library only; build with
// GO111MODULE=off go build.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
)

// commonResp has CommonCallbackResp's fields.
type commonResp struct {
	ActionCode int32  `json:"actionCode"`
	ErrCode    int32  `json:"errCode"`
	ErrMsg     string `json:"errMsg"`
	ErrDlt     string `json:"errDlt"`
	NextCode   int32  `json:"nextCode"`
}

// stringValue decodes as protocol's wrapperspb.StringValue: the JSON is read into a string.
type stringValue struct{ Value string }

func (s *stringValue) UnmarshalJSON(raw []byte) error { return json.Unmarshal(raw, &s.Value) }

// int32Value decodes as protocol's wrapperspb.Int32Value: the raw text through ParseInt.
type int32Value struct{ Value int32 }

func (v *int32Value) UnmarshalJSON(raw []byte) error {
	parsed, err := strconv.ParseInt(string(raw), 10, 32)
	if err != nil {
		return err
	}
	v.Value = int32(parsed)
	return nil
}

// offlinePushInfo has sdkws.OfflinePushInfo's JSON fields.
type offlinePushInfo struct {
	Title         string `json:"title"`
	Desc          string `json:"desc"`
	Ex            string `json:"ex"`
	IOSPushSound  string `json:"iOSPushSound"`
	IOSBadgeCount bool   `json:"iOSBadgeCount"`
	SignalInfo    string `json:"signalInfo"`
}

// userInfo has sdkws.UserInfo's JSON fields.
type userInfo struct {
	UserID           string `json:"userID"`
	Nickname         string `json:"nickname"`
	FaceURL          string `json:"faceURL"`
	Ex               string `json:"ex"`
	CreateTime       int64  `json:"createTime"`
	AppMangerLevel   int32  `json:"appMangerLevel"`
	GlobalRecvMsgOpt int32  `json:"globalRecvMsgOpt"`
}

// refuses is CommonCallbackResp.Parse's test (main and v3.7).
func (c *commonResp) refuses() bool { return c.ActionCode == 0 && c.NextCode == 1 }

// common gives the embedded CommonCallbackResp of any answer struct.
func (c *commonResp) common() *commonResp { return c }

type commonOnly struct {
	commonResp
}

type msgModify struct {
	commonResp
	Content          *string          `json:"content"`
	RecvID           *string          `json:"recvID"`
	GroupID          *string          `json:"groupID"`
	ClientMsgID      *string          `json:"clientMsgID"`
	ServerMsgID      *string          `json:"serverMsgID"`
	SenderPlatformID *int32           `json:"senderPlatformID"`
	SenderNickname   *string          `json:"senderNickname"`
	SenderFaceURL    *string          `json:"senderFaceURL"`
	SessionType      *int32           `json:"sessionType"`
	MsgFrom          *int32           `json:"msgFrom"`
	ContentType      *int32           `json:"contentType"`
	Status           *int32           `json:"status"`
	Options          *map[string]bool `json:"options"`
	OfflinePushInfo  *offlinePushInfo `json:"offlinePushInfo"`
	AtUserIDList     *[]string        `json:"atUserIDList"`
	MsgDataList      *[]byte          `json:"msgDataList"`
	AttachedInfo     *string          `json:"attachedInfo"`
	Ex               *string          `json:"ex"`
}

type updateUserInfo struct {
	commonResp
	Nickname *string `json:"nickName"`
	FaceURL  *string `json:"faceURL"`
	Ex       *string `json:"ex"`
}

type updateUserInfoEx struct {
	commonResp
	Nickname *stringValue `json:"nickName"`
	FaceURL  *stringValue `json:"faceURL"`
	Ex       *stringValue `json:"ex"`
}

type userRegister struct {
	commonResp
	Users []*userInfo `json:"users"`
}

type createGroup struct {
	commonResp
	GroupID           *string `json:"groupID"`
	GroupName         *string `json:"groupName"`
	Notification      *string `json:"notification"`
	Introduction      *string `json:"introduction"`
	FaceURL           *string `json:"faceURL"`
	OwnerUserID       *string `json:"ownerUserID"`
	Ex                *string `json:"ex"`
	Status            *int32  `json:"status"`
	CreatorUserID     *string `json:"creatorUserID"`
	GroupType         *int32  `json:"groupType"`
	NeedVerification  *int32  `json:"needVerification"`
	LookMemberInfo    *int32  `json:"lookMemberInfo"`
	ApplyMemberFriend *int32  `json:"applyMemberFriend"`
}

type memberJoin struct {
	UserID      *string `json:"userID"`
	Nickname    *string `json:"nickname"`
	FaceURL     *string `json:"faceURL"`
	RoleLevel   *int32  `json:"roleLevel"`
	MuteEndTime *int64  `json:"muteEndTime"`
	Ex          *string `json:"ex"`
}

type membersJoinGroup struct {
	commonResp
	MemberCallbackList []*memberJoin `json:"memberCallbackList"`
}

// memberJoinGroupLegacy: v3.5 to v3.7.1, one member per call.
type memberJoinGroupLegacy struct {
	commonResp
	Nickname    *string `json:"nickname"`
	FaceURL     *string `json:"faceURL"`
	RoleLevel   *int32  `json:"roleLevel"`
	MuteEndTime *int64  `json:"muteEndTime"`
	Ex          *string `json:"ex"`
}

type setGroupMemberInfo struct {
	commonResp
	Ex        *string `json:"ex"`
	Nickname  *string `json:"nickName"`
	FaceURL   *string `json:"faceURL"`
	RoleLevel *int32  `json:"roleLevel"`
}

type inviteUserToGroup struct {
	commonResp
	RefusedMembersAccount []string `json:"refusedMembersAccount,omitempty"`
}

type setGroupInfo struct {
	commonResp
	GroupID           string  `json:"groupID"`
	GroupName         string  `json:"groupName"`
	Notification      string  `json:"notification"`
	Introduction      string  `json:"introduction"`
	FaceURL           string  `json:"faceURL"`
	Ex                *string `json:"ex"`
	NeedVerification  *int32  `json:"needVerification"`
	LookMemberInfo    *int32  `json:"lookMemberInfo"`
	ApplyMemberFriend *int32  `json:"applyMemberFriend"`
}

type setGroupInfoEx struct {
	commonResp
	GroupID           string       `json:"groupID"`
	GroupName         *stringValue `json:"groupName"`
	Notification      *stringValue `json:"notification"`
	Introduction      *stringValue `json:"introduction"`
	FaceURL           *stringValue `json:"faceURL"`
	Ex                *stringValue `json:"ex"`
	NeedVerification  *int32Value  `json:"needVerification"`
	LookMemberInfo    *int32Value  `json:"lookMemberInfo"`
	ApplyMemberFriend *int32Value  `json:"applyMemberFriend"`
}

type importFriends struct {
	commonResp
	FriendUserIDs []string `json:"friendUserIDs"`
}

type setFriendRemark struct {
	commonResp
	Remark string `json:"remark"`
}

// push: CallbackBeforePushResp and CallbackBeforeSuperGroupOnlinePushResp (same fields).
type push struct {
	commonResp
	UserIDs         []string         `json:"userIDList"`
	OfflinePushInfo *offlinePushInfo `json:"offlinePushInfo"`
}

type createConversations struct {
	commonResp
	RecvMsgOpt    *int32  `json:"recvMsgOpt"`
	IsPinned      *bool   `json:"isPinned"`
	IsPrivateChat *bool   `json:"isPrivateChat"`
	BurnDuration  *int32  `json:"burnDuration"`
	GroupAtType   *int32  `json:"groupAtType"`
	AttachedInfo  *string `json:"attachedInfo"`
	Ex            *string `json:"ex"`
}

// answerFor is a new answer struct for a before-command, or nil for an unknown one.
func answerFor(command string) interface{} {
	switch command {
	case "callbackBeforeSendSingleMsgCommand", "callbackBeforeSendGroupMsgCommand",
		"callbackBeforeJoinGroupCommand", "callbackBeforeAddFriendCommand",
		"callbackBeforeAddBlackCommand", "callbackBeforeAddFriendAgreeCommand":
		return &commonOnly{}
	case "callbackBeforeMsgModifyCommand", "callbackMsgModifyCommand":
		return &msgModify{}
	case "callbackBeforeUpdateUserInfoCommand":
		return &updateUserInfo{}
	case "callbackBeforeUpdateUserInfoExCommand":
		return &updateUserInfoEx{}
	case "callbackBeforeUserRegisterCommand":
		return &userRegister{}
	case "callbackBeforeCreateGroupCommand":
		return &createGroup{}
	case "callbackBeforeMembersJoinGroupCommand":
		return &membersJoinGroup{}
	case "callbackBeforeMemberJoinGroupCommand":
		return &memberJoinGroupLegacy{}
	case "callbackBeforeSetGroupMemberInfoCommand":
		return &setGroupMemberInfo{}
	case "callbackBeforeInviteJoinGroupCommand":
		return &inviteUserToGroup{}
	case "callbackBeforeSetGroupInfoCommand":
		return &setGroupInfo{}
	case "callbackBeforeSetGroupInfoExCommand":
		return &setGroupInfoEx{}
	case "callbackBeforeImportFriendsCommand":
		return &importFriends{}
	case "callbackBeforeSetFriendRemarkCommand", "callbackBeforeSetFriendRemark":
		return &setFriendRemark{}
	case "callbackBeforeOnlinePushCommand", "callbackOnlinePushCommand",
		"callbackBeforeGroupOnlinePushCommand", "callbackSuperGroupOnlinePushCommand",
		"callbackBeforeOfflinePushCommand", "callbackOfflinePushCommand":
		return &push{}
	case "callbackBeforeCreateSingleChatConversationsCommand",
		"callbackBeforeCreateGroupChatConversationsCommand":
		return &createConversations{}
	}
	return nil
}

type input struct {
	Command string `json:"command"`
	// A JSON string holding the answer's bytes, or the answer itself.
	Answer json.RawMessage `json:"answer"`
}

type result struct {
	Decodes  bool   `json:"decodes"`
	Error    string `json:"error"`
	Refuses  bool   `json:"refuses"`
	NextCode int32  `json:"nextCode"`
	Content  *bool  `json:"content"`
}

func judge(line []byte) result {
	var in input
	if err := json.Unmarshal(line, &in); err != nil {
		return result{Error: "oracle input: " + err.Error()}
	}
	answer := []byte(in.Answer)
	if len(answer) > 0 && answer[0] == '"' {
		var text string
		if err := json.Unmarshal(answer, &text); err != nil {
			return result{Error: "oracle input: " + err.Error()}
		}
		answer = []byte(text)
	}
	resp := answerFor(in.Command)
	if resp == nil {
		return result{Error: "oracle input: unknown command " + in.Command}
	}
	if err := json.Unmarshal(answer, resp); err != nil {
		return result{Error: err.Error()}
	}
	common := resp.(interface{ common() *commonResp }).common()
	out := result{Decodes: true, Refuses: common.refuses(), NextCode: common.NextCode}
	if modify, ok := resp.(*msgModify); ok && in.Command == "callbackBeforeMsgModifyCommand" && !out.Refuses && modify.Content != nil {
		ok := json.Unmarshal([]byte(*modify.Content), &struct{}{}) == nil
		out.Content = &ok
	}
	return out
}

func main() {
	in := bufio.NewReader(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for {
		line, err := in.ReadBytes('\n')
		if len(line) > 0 {
			encoded, _ := json.Marshal(judge(line))
			out.Write(encoded)
			out.WriteByte('\n')
		}
		if err != nil {
			break
		}
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
