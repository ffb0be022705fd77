package openimworker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The Nats-Service-Error-Code values the kit sends.
const (
	// BadRequestCode: the body is not the command's request.
	BadRequestCode = 400
	// InternalErrorCode: the handler failed, or its answer cannot be sent.
	InternalErrorCode = 500
)

// Context is what a handler knows besides the body. It is a context.Context that ends at the
// request's deadline (X-Deadline-Unix-Ms) or at shutdown: bound any I/O by it.
type Context struct {
	context.Context
	// Command is the OpenIM command, e.g. callbackBeforeSetGroupMemberInfoCommand.
	Command string
	// RequestID is X-Request-Id: log it with the decision to tie the lines together.
	RequestID string
	// OperationID is X-Operation-Id, OpenIM's id for the user's operation, or "".
	OperationID string
	// Deadline is X-Deadline-Unix-Ms; the zero time when absent or malformed.
	Deadline time.Time
	// Log is the worker's logger.
	Log *Logger
	// Trace is the request's W3C trace context (traceparent), the zero value when it carried
	// none; it is also on the embedded context (TraceFrom(ctx.Context)). Put it on what the handler
	// publishes with InjectTrace.
	Trace TraceContext
}

// BadRequestError makes the kit answer Nats-Service-Error-Code 400: return one from a handler
// (or from a request type's UnmarshalJSON) when the body is not a request it can read.
type BadRequestError struct{ Reason string }

func (e *BadRequestError) Error() string { return e.Reason }

// BadRequest is a BadRequestError for reason (short, one line, no request data).
func BadRequest(reason string) error { return &BadRequestError{Reason: reason} }

// response is what to send back for one body: an answer, or a service error.
type response struct {
	body        []byte
	serviceCode int
	serviceText string
}

func serviceError(code int, text string) response {
	return response{serviceCode: code, serviceText: strings.NewReplacer("\r", " ", "\n", " ").Replace(text)}
}

// handle is one command's handler with its request type erased.
type handle func(ctx *Context, body []byte) response

// typed turns a typed handler into a handle: parse, decide, encode.
func typed[Req any](command string, fn func(*Context, *Req) (Decision, error)) handle {
	return func(ctx *Context, body []byte) response {
		request := new(Req)
		if err := json.Unmarshal(body, request); err != nil {
			return serviceError(BadRequestCode, badRequestText(command, err))
		}
		decision, err := callSafely(func() (Decision, error) { return fn(ctx, request) })
		return encode(decision, err)
	}
}

// callSafely runs a handler, turning a panic into an error so that one bad message cannot stop
// the worker.
func callSafely(fn func() (Decision, error)) (decision Decision, err error) {
	defer func() {
		if recovered := recover(); recovered != nil {
			err = fmt.Errorf("the handler panicked: %v", recovered)
		}
	}()
	return fn()
}

// encode turns a handler's result into the reply.
func encode(decision Decision, err error) response {
	if err != nil {
		var bad *BadRequestError
		if errors.As(err, &bad) {
			return serviceError(BadRequestCode, "bad request: "+bad.Reason)
		}
		return serviceError(InternalErrorCode, "cannot decide: "+err.Error())
	}
	if decision.reject && decision.errCode < MinRejectErrCode {
		return serviceError(InternalErrorCode, fmt.Sprintf("cannot decide: a reject needs an errCode of at least %d", MinRejectErrCode))
	}
	body, err := json.Marshal(decision)
	if err != nil {
		return serviceError(InternalErrorCode, "internal error: cannot encode the answer: "+err.Error())
	}
	return response{body: body}
}

// badRequestText names what is wrong without quoting the body: Go's messages for a wrong type
// name the field and the Go type, never the value; syntax errors give the offset.
func badRequestText(command string, err error) string {
	var syntax *json.SyntaxError
	var wrongType *json.UnmarshalTypeError
	var bad *BadRequestError
	switch {
	case errors.As(err, &bad):
		return "bad request: " + bad.Reason
	case errors.As(err, &syntax):
		return fmt.Sprintf("bad request: body is not valid JSON (offset %d)", syntax.Offset)
	case errors.As(err, &wrongType):
		where := wrongType.Field
		if where == "" {
			where = "the top level"
		}
		return fmt.Sprintf("bad request: body is not a %s request (%s is not a %s)", command, where, wrongType.Type)
	default:
		return fmt.Sprintf("bad request: body is not a %s request", command)
	}
}

// jsonUnmarshal is encoding/json's Unmarshal, named once for the files that parse bodies.
var jsonUnmarshal = json.Unmarshal
