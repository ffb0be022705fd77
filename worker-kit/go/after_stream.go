package openimworker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// The defaults of an AfterStream, the same as the Rust kit's.
const (
	// DefaultAckWait: how long the server waits for an ack before delivering again. While a
	// handler runs, the kit tells the server it is still working every half of it.
	DefaultAckWait = 30 * time.Second
	// DefaultNakDelay: a message whose handler failed comes back after this delay.
	DefaultNakDelay = time.Second
	// DefaultFetchWait: how long one pull waits for messages; also how long a shutdown may
	// wait for the last pull to end.
	DefaultFetchWait = time.Second
)

// AfterCallback is one after-callback read from the gateway's JetStream stream: the same body
// and headers as the live message.
type AfterCallback struct {
	// Command is the OpenIM command, the subject's last token.
	Command string
	// Body is OpenIM's request body, byte for byte.
	Body []byte
	// Header holds the gateway's headers (X-Request-Id, ...).
	Header nats.Header
}

// RequestID is the callback's X-Request-Id.
func (a AfterCallback) RequestID() string { return a.Header.Get(HeaderRequestID) }

// AfterStream reads after-callbacks the gateway stored in its JetStream stream
// (GATEWAY_AFTER_STREAM) through a durable pull consumer, so that a worker that was down reads
// what it missed. The consumer is created when missing, from the oldest stored message, or
// updated to this configuration; several workers may share it. A handler returning nil gets
// its message acknowledged (the kit waits for the server's confirmation); an error has it
// delivered again after NakDelay; a BadRequestError (a body that will never parse) terminates
// it. At most Concurrency handlers run at once, and the kit never pulls more messages than
// there are free handlers.
type AfterStream struct {
	// Stream is the gateway's GATEWAY_AFTER_STREAM.
	Stream string
	// Durable is this worker's consumer name: workers sharing it share the work.
	Durable string
	// Prefix is the gateway's GATEWAY_SUBJECT_PREFIX; openim.callback when empty.
	Prefix string
	// Commands limits the consumer to these commands; empty: every after-callback.
	Commands []string
	// Concurrency bounds the handlers running at once; DefaultConcurrency when 0.
	Concurrency int
	// AckWait, NakDelay and FetchWait: the defaults above when 0.
	AckWait, NakDelay, FetchWait time.Duration
	// MaxDeliver bounds the deliveries of one message; 0: no bound.
	MaxDeliver int
	// Grace bounds the wait for running handlers on shutdown; DefaultShutdownGrace when 0.
	Grace time.Duration
	// Log receives the log lines; stderr at info when nil.
	Log *Logger

	acked, failed, terminated int64
}

// AfterStreamReport counts what a consumer did.
type AfterStreamReport struct{ Acked, Failed, Terminated int64 }

// Report is a snapshot of the counts so far.
func (a *AfterStream) Report() AfterStreamReport {
	return AfterStreamReport{atomic.LoadInt64(&a.acked), atomic.LoadInt64(&a.failed), atomic.LoadInt64(&a.terminated)}
}

func (a *AfterStream) defaults() {
	if a.Prefix == "" {
		a.Prefix = DefaultSubjectPrefix
	}
	if a.Concurrency < 1 {
		a.Concurrency = DefaultConcurrency
	}
	if a.AckWait <= 0 {
		a.AckWait = DefaultAckWait
	}
	if a.NakDelay <= 0 {
		a.NakDelay = DefaultNakDelay
	}
	if a.FetchWait <= 0 {
		a.FetchWait = DefaultFetchWait
	}
	if a.Grace <= 0 {
		a.Grace = DefaultShutdownGrace
	}
	if a.Log == nil {
		a.Log = DefaultLogger()
	}
}

// filter is the consumer's filter subject; several commands share {prefix}.* and the others
// are acknowledged and skipped by this consumer.
func (a *AfterStream) filter() (string, map[string]bool, error) {
	for _, command := range a.Commands {
		if kind, known := Commands[command]; !known || kind != After {
			return "", nil, fmt.Errorf("%s is not an after-callback the gateway knows", command)
		}
	}
	if len(a.Commands) == 1 {
		return a.Prefix + "." + a.Commands[0], nil, nil
	}
	var only map[string]bool
	if len(a.Commands) > 1 {
		only = map[string]bool{}
		for _, command := range a.Commands {
			only[command] = true
		}
	}
	return a.Prefix + ".*", only, nil
}

// Consume creates or updates the durable consumer, calls ready, and hands every stored
// after-callback to fn until ctx ends; then it stops pulling and waits for the running
// handlers (within Grace), acknowledging them.
func (a *AfterStream) Consume(ctx context.Context, nc *nats.Conn, ready func(), fn func(context.Context, AfterCallback) error) error {
	a.defaults()
	if a.Stream == "" || a.Durable == "" {
		return errors.New("an AfterStream needs a Stream and a Durable")
	}
	filter, only, err := a.filter()
	if err != nil {
		return err
	}
	if err := waitConnected(ctx, nc); err != nil {
		return err
	}
	js, err := nc.JetStream()
	if err != nil {
		return err
	}
	config := &nats.ConsumerConfig{
		Durable:       a.Durable,
		DeliverPolicy: nats.DeliverAllPolicy,
		AckPolicy:     nats.AckExplicitPolicy,
		AckWait:       a.AckWait,
		MaxDeliver:    a.MaxDeliver,
		FilterSubject: filter,
	}
	if a.MaxDeliver == 0 {
		config.MaxDeliver = -1
	}
	if _, err := js.ConsumerInfo(a.Stream, a.Durable); err == nil {
		if _, err := js.UpdateConsumer(a.Stream, config); err != nil {
			return fmt.Errorf("cannot update the consumer %s of the stream %s: %v", a.Durable, a.Stream, err)
		}
	} else if _, err := js.AddConsumer(a.Stream, config); err != nil {
		return fmt.Errorf("cannot create the consumer %s on the stream %s: %v", a.Durable, a.Stream, err)
	}
	sub, err := js.PullSubscribe(filter, a.Durable, nats.Bind(a.Stream, a.Durable))
	if err != nil {
		return fmt.Errorf("cannot bind to the consumer %s of the stream %s: %v", a.Durable, a.Stream, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if ready != nil {
		ready()
	}
	handlerCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slots := make(chan struct{}, a.Concurrency)
	var running sync.WaitGroup
	for ctx.Err() == nil {
		// Pull only as many messages as there are free handlers.
		free := a.Concurrency - len(slots)
		if free == 0 {
			select {
			case slots <- struct{}{}:
				<-slots
			case <-ctx.Done():
			}
			continue
		}
		msgs, err := sub.Fetch(free, nats.MaxWait(a.FetchWait))
		if err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			if nc.IsClosed() {
				return fmt.Errorf("the NATS connection is closed")
			}
			a.Log.Log(LevelWarn, "cannot pull after-callbacks; retrying", "stream", a.Stream, "cause", err)
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
			continue
		}
		for _, msg := range msgs {
			command := msg.Subject[strings.LastIndex(msg.Subject, ".")+1:]
			if only != nil && !only[command] {
				_ = msg.AckSync()
				continue
			}
			slots <- struct{}{}
			running.Add(1)
			go func(msg *nats.Msg, command string) {
				defer func() { <-slots; running.Done() }()
				a.one(handlerCtx, msg, command, fn)
			}(msg, command)
		}
	}
	done := make(chan struct{})
	go func() { running.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(a.Grace):
		cancel()
		a.Log.Log(LevelWarn, "shutdown grace elapsed; unfinished after-callbacks come back after the ack wait", "grace", a.Grace)
	}
	report := a.Report()
	a.Log.Log(LevelInfo, "after-stream consumer stopped", "acked", report.Acked, "failed", report.Failed, "terminated", report.Terminated)
	return nil
}

// one runs the handler for one message, telling the server it is still working every half ack
// wait, then acknowledges, naks or terminates it.
func (a *AfterStream) one(ctx context.Context, msg *nats.Msg, command string, fn func(context.Context, AfterCallback) error) {
	stop := make(chan struct{})
	go func() {
		ticker := time.NewTicker(a.AckWait / 2)
		defer ticker.Stop()
		for {
			select {
			case <-ticker.C:
				_ = msg.InProgress()
			case <-stop:
				return
			}
		}
	}()
	callback := AfterCallback{Command: command, Body: msg.Data, Header: msg.Header}
	if callback.Header == nil {
		callback.Header = nats.Header{}
	}
	_, err := callSafely(func() (Decision, error) { return Decision{}, fn(ctx, callback) })
	close(stop)
	var bad *BadRequestError
	switch {
	case err == nil:
		if ackErr := msg.AckSync(); ackErr != nil {
			a.Log.Log(LevelWarn, "the server did not confirm the ack: the after-callback may come again", "request_id", callback.RequestID(), "cause", ackErr)
			return
		}
		atomic.AddInt64(&a.acked, 1)
	case errors.As(err, &bad):
		atomic.AddInt64(&a.terminated, 1)
		a.Log.Log(LevelWarn, "after-callback dropped for good: its body does not parse", "command", command, "request_id", callback.RequestID(), "reason", bad.Reason)
		_ = msg.Term()
	default:
		atomic.AddInt64(&a.failed, 1)
		a.Log.Log(LevelWarn, "after-callback not handled; it comes back", "command", command, "request_id", callback.RequestID(), "cause", err, "after", a.NakDelay)
		_ = msg.NakWithDelay(a.NakDelay)
	}
}

// ParseAfter parses an after-callback's body into Req, giving a BadRequestError (the message is
// then terminated) when it does not parse.
func ParseAfter[Req any](callback AfterCallback) (*Req, error) {
	request := new(Req)
	if err := jsonUnmarshal(callback.Body, request); err != nil {
		return nil, &BadRequestError{Reason: strings.TrimPrefix(badRequestText(callback.Command, err), "bad request: ")}
	}
	return request, nil
}
