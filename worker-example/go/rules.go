package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	ow "github.com/openim-gateway/openim-gateway/worker-kit/go"
)

// The refusal codes, the same as the Rust, Python and Node example workers'
// (worker-example/README.md, "The rules").
const (
	errBannedWord       = 5001
	errNicknameTooLong  = 5002
	errBlankNickname    = 5003
	errAvatarNotHTTPS   = 5004
	errOwnerRole        = 5005
	errUnknownRole      = 5006
	roleMember          = 20
	roleAdmin           = 60
	roleOwner           = 100
	httpsPrefix         = "https://"
	defaultMaxNickname  = 32
	maxNicknameLimit    = 255
	defaultBannedWords  = "admin,official,openim"
	commandSetGroupInfo = "callbackBeforeSetGroupMemberInfoCommand"
)

// Rules is the policy: banned words (lowercased, normalised, non-empty) and a length limit in
// characters (Unicode scalar values, not bytes).
type Rules struct {
	BannedWords      []string
	MaxNicknameChars int
}

// NewRules drops empty words: an empty word would match every nickname.
func NewRules(words []string, maxNicknameChars int) Rules {
	rules := Rules{MaxNicknameChars: maxNicknameChars}
	for _, word := range words {
		if word = lowercase(normaliseWhitespace(word)); word != "" {
			rules.BannedWords = append(rules.BannedWords, word)
		}
	}
	return rules
}

// bannedWordIn is the first banned word the normalised nickname contains.
func (r Rules) bannedWordIn(nickname string) (string, bool) {
	lower := lowercase(nickname)
	for _, word := range r.BannedWords {
		if strings.Contains(lower, word) {
			return word, true
		}
	}
	return "", false
}

// memberInfoRequest is the command's request with callbackCommand, groupID and userID required
// (present and not null), as the other example workers read it.
type memberInfoRequest struct {
	ow.BeforeSetGroupMemberInfoCommandRequest
}

func (r *memberInfoRequest) UnmarshalJSON(body []byte) error {
	var required struct {
		CallbackCommand *string `json:"callbackCommand"`
		GroupID         *string `json:"groupID"`
		UserID          *string `json:"userID"`
	}
	if err := json.Unmarshal(body, &required); err != nil {
		return err
	}
	for _, field := range []struct {
		name  string
		value *string
	}{{"callbackCommand", required.CallbackCommand}, {"groupID", required.GroupID}, {"userID", required.UserID}} {
		if field.value == nil {
			return ow.BadRequest(fmt.Sprintf("body is not a %s request (%s missing or null)", commandSetGroupInfo, field.name))
		}
	}
	return json.Unmarshal(body, &r.BeforeSetGroupMemberInfoCommandRequest)
}

// decide applies the rules in order; the first that fails decides. The answer only ever
// carries nickName, and only when normalising changed it.
func decide(rules Rules, request *ow.BeforeSetGroupMemberInfoCommandRequest) (ow.Decision, error) {
	var normalised string
	if request.NickName != nil {
		original := *request.NickName
		normalised = normaliseWhitespace(original)
		if normalised == "" && original != "" {
			return ow.Reject(errBlankNickname, "nickname must not be blank")
		}
		if _, banned := rules.bannedWordIn(normalised); banned {
			return ow.Reject(errBannedWord, "nickname contains a banned word")
		}
		if utf8.RuneCountInString(normalised) > rules.MaxNicknameChars {
			return ow.Reject(errNicknameTooLong, fmt.Sprintf("nickname is longer than %d characters", rules.MaxNicknameChars))
		}
	}
	if request.FaceURL != nil && *request.FaceURL != "" && !hasHTTPSPrefix(*request.FaceURL) {
		return ow.Reject(errAvatarNotHTTPS, "avatar URL must use https")
	}
	if request.RoleLevel != nil {
		switch *request.RoleLevel {
		case roleMember, roleAdmin:
		case roleOwner:
			return ow.Reject(errOwnerRole, "the owner changes through a group owner transfer, not member info")
		default:
			return ow.Reject(errUnknownRole, "roleLevel must be 20 (member) or 60 (admin)")
		}
	}
	if request.NickName != nil && normalised != *request.NickName {
		return ow.Modify(ow.BeforeSetGroupMemberInfoCommandChanges{NickName: &normalised}), nil
	}
	return ow.Allow(), nil
}

func hasHTTPSPrefix(url string) bool {
	return len(url) >= len(httpsPrefix) && strings.EqualFold(url[:len(httpsPrefix)], httpsPrefix)
}

// normaliseWhitespace trims and collapses every run of Unicode white space (unicode.IsSpace:
// tabs, newlines, no-break and ideographic spaces...) into one ASCII space. Characters that are
// invisible but not white space, such as the zero-width space, stay.
func normaliseWhitespace(text string) string {
	return strings.Join(strings.FieldsFunc(text, unicode.IsSpace), " ")
}

// lowercase is Unicode's full lowercase mapping, as the other example workers apply it: Go's
// strings.ToLower maps one rune to one rune, so the two exceptions are done here: İ (U+0130)
// becomes i followed by U+0307, and a capital sigma ending a word becomes ς.
func lowercase(text string) string {
	var out strings.Builder
	runes := []rune(text)
	for i, r := range runes {
		switch {
		case r == 'İ':
			out.WriteString("i\u0307")
		case r == 'Σ' && finalSigma(runes, i):
			out.WriteRune('ς')
		default:
			out.WriteRune(unicode.ToLower(r))
		}
	}
	return out.String()
}

// finalSigma: a cased letter before position i (skipping case-ignorable marks) and none after.
func finalSigma(runes []rune, i int) bool {
	before := false
	for j := i - 1; j >= 0; j-- {
		if caseIgnorable(runes[j]) {
			continue
		}
		before = cased(runes[j])
		break
	}
	if !before {
		return false
	}
	for j := i + 1; j < len(runes); j++ {
		if caseIgnorable(runes[j]) {
			continue
		}
		return !cased(runes[j])
	}
	return true
}

func cased(r rune) bool {
	return unicode.IsUpper(r) || unicode.IsLower(r) || unicode.IsTitle(r)
}

func caseIgnorable(r rune) bool {
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk) || r == '\'' || r == '.' || r == ':' || r == '\u00B7' || r == '\u2019'
}
