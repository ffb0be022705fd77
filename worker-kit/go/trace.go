package openimworker

import (
	"context"
	"encoding/hex"
	"strings"

	"github.com/nats-io/nats.go"
)

// The W3C Trace Context headers the gateway puts on a request when it has a trace (its own
// span's context when it exports traces, else OpenIM's header passed on).
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// TraceContext is a request's W3C trace context: the gateway's trace id and the span a
// worker's work is the child of. The zero value means the request carried none.
//
// This kit continues the trace (it reads traceparent, hands it to the handler in
// Context.Trace and on ctx, and puts it on what the handler publishes through InjectTrace)
// but exports no spans itself: there is no OpenTelemetry Go SDK with an OTLP exporter to
// build on here (see README.md, "Traces"). A worker that has one starts its span from
// TraceID and ParentSpanID.
type TraceContext struct {
	// TraceID is the 32 lowercase hex digits of the trace.
	TraceID string
	// ParentSpanID is the 16 lowercase hex digits of the gateway's span.
	ParentSpanID string
	// Flags are the trace flags (01: sampled).
	Flags byte
	// State is the tracestate header, passed on as it came.
	State string
}

// Valid says whether the context carries a trace.
func (t TraceContext) Valid() bool { return t.TraceID != "" }

// Sampled says whether the caller records this trace.
func (t TraceContext) Sampled() bool { return t.Flags&1 == 1 }

// Traceparent is the header value for the same parent ("" when not Valid).
func (t TraceContext) Traceparent() string {
	if !t.Valid() {
		return ""
	}
	return "00-" + t.TraceID + "-" + t.ParentSpanID + "-" + hex.EncodeToString([]byte{t.Flags})
}

// ParseTraceparent reads a W3C traceparent header (version 00, or a later version's first
// four fields). ok is false for anything else, including all-zero ids.
func ParseTraceparent(value string) (t TraceContext, ok bool) {
	parts := strings.Split(strings.TrimSpace(value), "-")
	if len(parts) < 4 {
		return TraceContext{}, false
	}
	version, traceID, spanID, flags := parts[0], parts[1], parts[2], parts[3]
	if !isLowerHex(version, 2) || version == "ff" || (version == "00" && len(parts) != 4) {
		return TraceContext{}, false
	}
	if !isLowerHex(traceID, 32) || !isLowerHex(spanID, 16) || !isLowerHex(flags, 2) {
		return TraceContext{}, false
	}
	if strings.Trim(traceID, "0") == "" || strings.Trim(spanID, "0") == "" {
		return TraceContext{}, false
	}
	decoded, _ := hex.DecodeString(flags)
	return TraceContext{TraceID: traceID, ParentSpanID: spanID, Flags: decoded[0]}, true
}

func isLowerHex(value string, length int) bool {
	if len(value) != length {
		return false
	}
	for _, c := range value {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// traceOf reads a request's trace context from its NATS headers.
func traceOf(header nats.Header) TraceContext {
	if header == nil {
		return TraceContext{}
	}
	t, ok := ParseTraceparent(header.Get(HeaderTraceparent))
	if !ok {
		return TraceContext{}
	}
	t.State = header.Get(HeaderTracestate)
	return t
}

// InjectTrace puts t on header (traceparent, and tracestate when there is one), so that what
// a handler publishes continues the request's trace. Nothing when t is not Valid.
func InjectTrace(header nats.Header, t TraceContext) {
	if !t.Valid() || header == nil {
		return
	}
	header.Set(HeaderTraceparent, t.Traceparent())
	if t.State != "" {
		header.Set(HeaderTracestate, t.State)
	}
}

type traceKey struct{}

// WithTrace returns ctx carrying t, for code below a handler that takes a context.Context.
func WithTrace(ctx context.Context, t TraceContext) context.Context {
	return context.WithValue(ctx, traceKey{}, t)
}

// TraceFrom is the trace context WithTrace put on ctx (the zero value when none).
func TraceFrom(ctx context.Context) TraceContext {
	t, _ := ctx.Value(traceKey{}).(TraceContext)
	return t
}
