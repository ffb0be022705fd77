package openimworker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
)

// MinRejectErrCode is the smallest errCode a reject may carry: the gateway refuses a smaller
// one (OpenIM would turn it into an internal error or a refusal that looks like a success).
const MinRejectErrCode = 100

// Decision is a worker's answer to a before-callback: allow, reject or modify. The zero value
// allows. Build one with Allow, Reject or Modify.
type Decision struct {
	reject  bool
	errCode int32
	errMsg  string
	errDlt  string
	changes interface{}
}

// Allow lets the operation go ahead as the client asked: {"actionCode":0,"nextCode":0}.
func Allow() Decision { return Decision{} }

// Reject refuses the operation; the user's client receives code and msg. A code under
// MinRejectErrCode is refused here, with an error, rather than by the gateway later.
func Reject(code int32, msg string) (Decision, error) {
	if code < MinRejectErrCode {
		return Decision{}, fmt.Errorf("a reject needs an errCode of at least %d, got %d", MinRejectErrCode, code)
	}
	return Decision{reject: true, errCode: code, errMsg: msg}, nil
}

// Modify allows the operation with the fields of changes replaced: pass the command's
// ...Changes struct from models.go (a pointer or a value). Nil fields are left out of the
// answer, which keeps what the request asked for.
func Modify(changes interface{}) Decision { return Decision{changes: changes} }

// WithDetail adds errDlt, the detail OpenIM attaches to a refusal.
func (d Decision) WithDetail(detail string) Decision {
	d.errDlt = detail
	return d
}

// IsReject says whether the decision refuses the operation.
func (d Decision) IsReject() bool { return d.reject }

// MarshalJSON writes the answer as the other kits do: OpenIM's five common fields, in the
// order of CommonAnswer, then for a modification every non-null field of the changes.
func (d Decision) MarshalJSON() ([]byte, error) {
	common := CommonAnswer{}
	if d.reject {
		common = CommonAnswer{NextCode: 1, ErrCode: d.errCode, ErrMsg: d.errMsg, ErrDlt: d.errDlt}
	}
	body, err := json.Marshal(common)
	if err != nil || d.reject || d.changes == nil {
		return body, err
	}
	raw, err := json.Marshal(d.changes)
	if err != nil {
		return nil, fmt.Errorf("cannot encode the changes: %w", err)
	}
	var changed map[string]json.RawMessage
	if err := json.Unmarshal(raw, &changed); err != nil {
		return nil, fmt.Errorf("the changes are not a JSON object: %w", err)
	}
	keys := make([]string, 0, len(changed))
	for key, value := range changed {
		switch key {
		case "actionCode", "errCode", "errMsg", "errDlt", "nextCode":
			continue
		}
		if string(value) != "null" {
			keys = append(keys, key)
		}
	}
	sort.Strings(keys)
	out := bytes.NewBuffer(body[:len(body)-1])
	for _, key := range keys {
		name, _ := json.Marshal(key)
		out.WriteByte(',')
		out.Write(name)
		out.WriteByte(':')
		out.Write(changed[key])
	}
	out.WriteByte('}')
	return out.Bytes(), nil
}
