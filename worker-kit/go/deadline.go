package openimworker

import (
	"strconv"
	"strings"
	"time"
)

// The headers the gateway sends with every request (docs/worker-protocol.md, "The headers").
const (
	HeaderRequestID        = "X-Request-Id"
	HeaderCallbackCommand  = "X-Callback-Command"
	HeaderOperationID      = "X-Operation-Id"
	HeaderDeadlineUnixMs   = "X-Deadline-Unix-Ms"
	HeaderTimeoutMs        = "X-Timeout-Ms"
	HeaderServiceError     = "Nats-Service-Error"
	HeaderServiceErrorCode = "Nats-Service-Error-Code"
	DefaultSubjectPrefix   = "openim.callback"
	QueueGroup             = "openim-workers"
)

// parseDeadline reads X-Deadline-Unix-Ms. A missing or malformed value gives ok false: such a
// request is answered rather than dropped, since somebody may still wait for it.
func parseDeadline(value string) (time.Time, bool) {
	value = strings.TrimSpace(value)
	if value == "" {
		return time.Time{}, false
	}
	ms, err := strconv.ParseUint(value, 10, 63)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(ms)), true
}

// isPast says whether the gateway has already answered OpenIM at now for this deadline.
func isPast(deadline time.Time, now time.Time) bool {
	return now.After(deadline)
}
