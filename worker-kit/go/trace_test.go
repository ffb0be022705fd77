package openimworker

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func TestParseTraceparent(t *testing.T) {
	good := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	parsed, ok := ParseTraceparent(good)
	if !ok || parsed.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || parsed.ParentSpanID != "00f067aa0ba902b7" || !parsed.Sampled() {
		t.Fatalf("ParseTraceparent(%q) = %+v, %v", good, parsed, ok)
	}
	if parsed.Traceparent() != good {
		t.Fatalf("Traceparent() = %q, want %q", parsed.Traceparent(), good)
	}
	for _, bad := range []string{
		"",
		"garbage",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
	} {
		if parsed, ok := ParseTraceparent(bad); ok {
			t.Errorf("ParseTraceparent(%q) = %+v, want not ok", bad, parsed)
		}
	}
	if _, ok := ParseTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"); !ok {
		t.Error("a later version's extra fields must be accepted")
	}
}

func TestTraceIsReadFromHeadersAndInjected(t *testing.T) {
	in := nats.Header{}
	in.Set(HeaderTraceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
	in.Set(HeaderTracestate, "openim=t61rcWkgMzE")
	trace := traceOf(in)
	if !trace.Valid() || trace.Sampled() || trace.State != "openim=t61rcWkgMzE" {
		t.Fatalf("traceOf = %+v", trace)
	}
	out := nats.Header{}
	InjectTrace(out, trace)
	if out.Get(HeaderTraceparent) != in.Get(HeaderTraceparent) || out.Get(HeaderTracestate) != in.Get(HeaderTracestate) {
		t.Fatalf("InjectTrace wrote %v", out)
	}
	none := nats.Header{}
	InjectTrace(none, traceOf(nil))
	if len(none) != 0 {
		t.Fatalf("InjectTrace without a trace wrote %v", none)
	}
	if got := TraceFrom(WithTrace(context.Background(), trace)); got != trace {
		t.Fatalf("TraceFrom = %+v", got)
	}
	if TraceFrom(context.Background()).Valid() {
		t.Fatal("TraceFrom of a bare context must be the zero value")
	}
}

// TestTheHandlerContinuesTheRequestsTrace: through a real nats-server, the handler gets the
// request's traceparent in Context.Trace and on its context.Context, and one without gets the
// zero value.
func TestTheHandlerContinuesTheRequestsTrace(t *testing.T) {
	url := startNats(t)
	seen := make(chan [2]TraceContext, 2)
	w := New("trace-test")
	w.Log = quietLogger()
	Handle(w, memberInfo, func(c *Context, _ *BeforeSetGroupMemberInfoCommandRequest) (Decision, error) {
		seen <- [2]TraceContext{c.Trace, TraceFrom(c.Context)}
		return Allow(), nil
	})
	stop := serve(t, w, url)
	defer stop()
	client := connect(t, url)
	traced := request(time.Now().Add(5*time.Second), `{}`)
	traced.Header.Set(HeaderTraceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	traced.Header.Set(HeaderTracestate, "openim=t61rcWkgMzE")
	for _, msg := range []*nats.Msg{traced, request(time.Now().Add(5*time.Second), `{}`)} {
		if _, err := client.RequestMsg(msg, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	want := TraceContext{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", ParentSpanID: "00f067aa0ba902b7", Flags: 1, State: "openim=t61rcWkgMzE"}
	if got := <-seen; got[0] != want || got[1] != want {
		t.Fatalf("the traced request's handler saw %+v, want %+v", got, want)
	}
	if got := <-seen; got[0].Valid() || got[1].Valid() {
		t.Fatalf("a request without traceparent gave the handler %+v", got)
	}
}
