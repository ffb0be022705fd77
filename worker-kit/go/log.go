package openimworker

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Level is a log line's severity.
type Level int

// The levels, from the most verbose.
const (
	LevelDebug Level = iota
	LevelInfo
	LevelWarn
	LevelError
)

func (l Level) String() string {
	switch l {
	case LevelDebug:
		return "DEBUG"
	case LevelInfo:
		return "INFO"
	case LevelWarn:
		return "WARN"
	default:
		return "ERROR"
	}
}

// ParseLevel reads debug, info, warn (or warning) and error, in any case.
func ParseLevel(text string) (Level, error) {
	switch strings.ToLower(strings.TrimSpace(text)) {
	case "debug":
		return LevelDebug, nil
	case "info":
		return LevelInfo, nil
	case "warn", "warning":
		return LevelWarn, nil
	case "error":
		return LevelError, nil
	}
	return LevelInfo, fmt.Errorf("must be one of debug, info, warn, error")
}

// Logger writes one line per event: time, level, message, then key=value pairs. Logs go to
// stderr by default, leaving stdout to the ready line harnesses wait for.
type Logger struct {
	mu    sync.Mutex
	out   io.Writer
	level Level
}

// NewLogger logs lines at level and above to out.
func NewLogger(out io.Writer, level Level) *Logger {
	return &Logger{out: out, level: level}
}

// DefaultLogger logs info and above to stderr.
func DefaultLogger() *Logger { return NewLogger(os.Stderr, LevelInfo) }

// Enabled says whether lines at level are written.
func (l *Logger) Enabled(level Level) bool { return l != nil && level >= l.level }

// Log writes msg with key/value pairs (keys are strings); values are quoted when they hold
// spaces. Never pass a password, a token or a request body.
func (l *Logger) Log(level Level, msg string, pairs ...interface{}) {
	if !l.Enabled(level) {
		return
	}
	var line strings.Builder
	line.WriteString(time.Now().UTC().Format("2006-01-02T15:04:05.000Z"))
	line.WriteString(" ")
	line.WriteString(fmt.Sprintf("%-5s", level))
	line.WriteString(" ")
	line.WriteString(msg)
	for i := 0; i+1 < len(pairs); i += 2 {
		value := fmt.Sprint(pairs[i+1])
		if value == "" || strings.ContainsAny(value, " \t\n\"=") {
			value = fmt.Sprintf("%q", value)
		}
		fmt.Fprintf(&line, " %v=%s", pairs[i], value)
	}
	line.WriteString("\n")
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = io.WriteString(l.out, line.String())
}
