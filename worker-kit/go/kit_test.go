package openimworker

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestAnswerHelpers(t *testing.T) {
	check := func(d Decision, want string) {
		t.Helper()
		got, err := json.Marshal(d)
		if err != nil || string(got) != want {
			t.Fatalf("got %s (%v), want %s", got, err, want)
		}
	}
	check(Allow(), `{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}`)
	reject, err := Reject(5001, "nickname not allowed")
	if err != nil || !reject.IsReject() {
		t.Fatalf("Reject(5001): %v", err)
	}
	check(reject, `{"actionCode":0,"errCode":5001,"errMsg":"nickname not allowed","errDlt":"","nextCode":1}`)
	check(reject.WithDetail("see rules"), `{"actionCode":0,"errCode":5001,"errMsg":"nickname not allowed","errDlt":"see rules","nextCode":1}`)
	for _, code := range []int32{0, 1, 99, -5} {
		if _, err := Reject(code, "no"); err == nil {
			t.Fatalf("Reject(%d) gave no error", code)
		}
	}
	name := "Ada"
	check(Modify(BeforeSetGroupMemberInfoCommandChanges{NickName: &name}),
		`{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0,"nickName":"Ada"}`)
	role := int32(60)
	check(Modify(&BeforeSetGroupMemberInfoCommandChanges{NickName: &name, RoleLevel: &role}),
		`{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0,"nickName":"Ada","roleLevel":60}`)
	// A zero Decision is an allow; a reject built by hand with a small code is refused.
	if r := encode(Decision{reject: true, errCode: 5}, nil); r.serviceCode != InternalErrorCode {
		t.Fatalf("a reject under 100 was sent: %+v", r)
	}
	if r := encode(Decision{}, BadRequest("no groupID")); r.serviceCode != BadRequestCode || r.serviceText != "bad request: no groupID" {
		t.Fatalf("bad request: %+v", r)
	}
	if r := encode(Decision{}, errorString("db down\nretry")); r.serviceCode != InternalErrorCode || strings.Contains(r.serviceText, "\n") {
		t.Fatalf("handler error: %+v", r)
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

func TestTypedHandler(t *testing.T) {
	h := typed("cmd", func(_ *Context, r *BeforeSetGroupMemberInfoCommandRequest) (Decision, error) {
		if r.RoleLevel != nil && *r.RoleLevel == 1 {
			panic("boom")
		}
		return Allow(), nil
	})
	for body, code := range map[string]int{
		`not json`:           BadRequestCode,
		`[1,2]`:              BadRequestCode,
		`{"roleLevel":"60"}`: BadRequestCode,
		`{"roleLevel":1}`:    InternalErrorCode,
		`{"roleLevel":60}`:   0,
	} {
		if r := h(&Context{}, []byte(body)); r.serviceCode != code {
			t.Errorf("%s: got %+v, want code %d", body, r, code)
		}
	}
	// The reason never quotes the body.
	if r := h(&Context{}, []byte(`{"nickName":12345678}`)); strings.Contains(r.serviceText, "12345678") {
		t.Errorf("the reason quotes the body: %s", r.serviceText)
	}
}

func TestDeadlineHeader(t *testing.T) {
	if at, ok := parseDeadline("1764156305740"); !ok || at.UnixMilli() != 1764156305740 {
		t.Fatalf("parse: %v %v", at, ok)
	}
	for _, bad := range []string{"", "soon", "-1", "1.5", "99999999999999999999999"} {
		if _, ok := parseDeadline(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
	now := time.UnixMilli(1000)
	if isPast(time.UnixMilli(1000), now) || !isPast(time.UnixMilli(999), now) {
		t.Fatal("isPast")
	}
}

func TestFailuresAreLoggedOncePerServerAndCause(t *testing.T) {
	f := &failureLog{last: map[string]time.Time{}}
	start := time.Now()
	steps := []struct {
		server, cause string
		at            time.Duration
		want          bool
	}{
		{"a:1", "refused", 0, true},
		{"a:1", "refused", time.Second, false},
		{"a:1", "timed out", time.Second, true},
		{"b:1", "refused", time.Second, true},
		{"a:1", "refused", FailureLogInterval, true},
	}
	for _, s := range steps {
		if got := f.firstInInterval(s.server, s.cause, start.Add(s.at)); got != s.want {
			t.Errorf("%+v: got %v", s, got)
		}
	}
}

func TestURLsAreRedacted(t *testing.T) {
	got := RedactURLs("nats://bob:Hunter2x@h:1,tok3nX@h:2,nats://h:3")
	if strings.Contains(got, "Hunter2x") || strings.Contains(got, "tok3nX") || !strings.Contains(got, "bob:***@h:1") {
		t.Fatalf("%s", got)
	}
	_, err := ParseServers("nats://bob:Hun/ter2x@h:1")
	if err == nil || strings.Contains(err.Error(), "ter2x") {
		t.Fatalf("%v", err)
	}
	for _, good := range []string{"nats://a:4222", "a:4222, tls://b:4443", "nats://u:p%40ss@h:1"} {
		if _, err := ParseServers(good); err != nil {
			t.Errorf("%s: %v", good, err)
		}
	}
	for _, bad := range []string{"", ",", "http://a:1", "nats://a:notaport"} {
		if _, err := ParseServers(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
