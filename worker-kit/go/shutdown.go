package openimworker

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// SignalContext ends at the first SIGINT or SIGTERM; call stop to release the signals.
func SignalContext() (ctx context.Context, stop func()) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
