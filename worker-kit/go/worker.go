package openimworker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// DefaultConcurrency is how many messages are handled at once by default, across all
// commands: the same default as the other kits' WORKER_CONCURRENCY.
const DefaultConcurrency = 64

// DefaultShutdownGrace is how long the drain may take. A request older than the gateway's
// budget (5 s by default) has been answered by its fallback anyway.
const DefaultShutdownGrace = 5 * time.Second

// Worker is a worker's handlers and settings. Set the fields before Start; add handlers with
// Handle and HandleAfter.
type Worker struct {
	// Name is the connection name the server shows, and the program's name in log lines.
	Name string
	// Prefix must equal the gateway's GATEWAY_SUBJECT_PREFIX; openim.callback by default.
	Prefix string
	// Concurrency bounds the messages handled at once, across all commands (at least 1); the
	// rest wait in the client's buffer.
	Concurrency int
	// Grace bounds the drain on shutdown.
	Grace time.Duration
	// Log receives the kit's log lines; stderr at info by default.
	Log *Logger

	endpoints []endpoint
	stats     Stats
}

// Stats counts what a worker did, for its last log line and for tests.
type Stats struct {
	// Received counts messages received, over all commands.
	Received int64
	// Replied counts replies sent (answers and service errors).
	Replied int64
	// SkippedLate counts requests dropped because their deadline had passed.
	SkippedLate int64
	// After counts after-callbacks handled.
	After int64
}

type endpoint struct {
	command string
	before  handle
	after   func(*Context, []byte) error
}

// New is a worker called name with the default prefix, concurrency and grace.
func New(name string) *Worker {
	return &Worker{Name: name, Prefix: DefaultSubjectPrefix, Concurrency: DefaultConcurrency, Grace: DefaultShutdownGrace, Log: DefaultLogger()}
}

// Handle answers command (a before-callback) with fn, which receives the body parsed as Req:
// use the command's ...Request type from models.go, or your own.
func Handle[Req any](w *Worker, command string, fn func(*Context, *Req) (Decision, error)) {
	w.endpoints = append(w.endpoints, endpoint{command: command, before: typed(command, fn)})
}

// HandleAfter reads command (an after-callback, a notification) with fn; nothing is ever
// answered. A body that does not parse as Req is logged and dropped, as is fn's error.
func HandleAfter[Req any](w *Worker, command string, fn func(*Context, *Req) error) {
	w.endpoints = append(w.endpoints, endpoint{command: command, after: func(ctx *Context, body []byte) error {
		request := new(Req)
		if err := json.Unmarshal(body, request); err != nil {
			return fmt.Errorf("%s", badRequestText(command, err))
		}
		_, err := callSafely(func() (Decision, error) { return Decision{}, fn(ctx, request) })
		return err
	}})
}

// Subject is the subject command arrives on: {Prefix}.{command}.
func (w *Worker) Subject(command string) string { return w.Prefix + "." + command }

// Subjects lists the subjects the worker answers on.
func (w *Worker) Subjects() []string {
	subjects := make([]string, len(w.endpoints))
	for i, e := range w.endpoints {
		subjects[i] = w.Subject(e.command)
	}
	return subjects
}

// Stats is a snapshot of the counts so far.
func (w *Worker) Stats() Stats {
	return Stats{
		Received:    atomic.LoadInt64(&w.stats.Received),
		Replied:     atomic.LoadInt64(&w.stats.Replied),
		SkippedLate: atomic.LoadInt64(&w.stats.SkippedLate),
		After:       atomic.LoadInt64(&w.stats.After),
	}
}

// Serve subscribes every command in the queue group, confirms the subscriptions with the
// server (a round trip, so that no request sent after the ready line can miss the worker),
// calls ready, answers until ctx ends, then drains: every message the server routed to the
// worker before it processed the unsubscribe is still answered, within Grace. It does not
// close nc.
func (w *Worker) Serve(ctx context.Context, nc *nats.Conn, ready func()) error {
	if len(w.endpoints) == 0 {
		return errors.New("no command to handle: add one with Handle or HandleAfter")
	}
	if w.Log == nil {
		w.Log = DefaultLogger()
	}
	concurrency := w.Concurrency
	if concurrency < 1 {
		concurrency = 1
	}
	grace := w.Grace
	if grace <= 0 {
		grace = DefaultShutdownGrace
	}
	if err := waitConnected(ctx, nc); err != nil {
		return err
	}
	slots := make(chan struct{}, concurrency)
	var inFlight sync.WaitGroup
	var loops sync.WaitGroup
	subs := make([]*nats.Subscription, 0, len(w.endpoints))
	for _, e := range w.endpoints {
		sub, err := nc.QueueSubscribeSync(w.Subject(e.command), QueueGroup)
		if err != nil {
			return fmt.Errorf("cannot subscribe to %s: %v", w.Subject(e.command), err)
		}
		// The server's messages wait in the client while every slot is busy; never drop them.
		_ = sub.SetPendingLimits(-1, -1)
		subs = append(subs, sub)
	}
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("cannot confirm the subscriptions with the server: %v", err)
	}
	// Handlers see a context that ends at shutdown plus the grace, or at their deadline.
	handlerCtx, cancelHandlers := context.WithCancel(context.Background())
	defer cancelHandlers()
	ended := make(chan string, len(subs))
	for i, e := range w.endpoints {
		loops.Add(1)
		go func(e endpoint, sub *nats.Subscription) {
			defer loops.Done()
			if w.loop(handlerCtx, nc, e, sub, slots, &inFlight) {
				ended <- sub.Subject
			}
		}(e, subs[i])
	}
	if ready != nil {
		ready()
	}
	var endedSubject string
	select {
	case <-ctx.Done():
		w.Log.Log(LevelInfo, "shutting down: draining")
	case endedSubject = <-ended:
		w.Log.Log(LevelError, "a subscription ended without a shutdown", "subject", endedSubject)
	}
	// Drain: UNSUB, a round trip with the server, then every message already delivered is
	// handed out before the subscription closes (nats.go's Subscription.Drain).
	for _, sub := range subs {
		if err := sub.Drain(); err != nil && !errors.Is(err, nats.ErrBadSubscription) {
			w.Log.Log(LevelWarn, "cannot drain", "subject", sub.Subject, "cause", err)
		}
	}
	drained := make(chan struct{})
	go func() {
		loops.Wait()
		inFlight.Wait()
		close(drained)
	}()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	abandoned := false
	select {
	case <-drained:
	case <-timer.C:
		abandoned = true
		cancelHandlers()
	}
	flushErr := nc.FlushTimeout(grace)
	stats := w.Stats()
	switch {
	case abandoned:
		w.Log.Log(LevelWarn, "shutdown grace elapsed; abandoned unfinished replies", "grace", grace)
	case flushErr != nil:
		w.Log.Log(LevelWarn, "drained, but the last replies may be lost", "cause", flushErr)
	default:
		w.Log.Log(LevelInfo, "drained, all replies flushed", "received", stats.Received, "replied", stats.Replied, "skipped_late", stats.SkippedLate)
	}
	if endedSubject != "" {
		return fmt.Errorf("the subscription to %s ended without a shutdown", endedSubject)
	}
	return nil
}

// waitConnected waits until nc is connected (it retries on its own) or ctx ends.
func waitConnected(ctx context.Context, nc *nats.Conn) error {
	for !nc.IsConnected() {
		if nc.IsClosed() {
			if cause := nc.LastError(); cause != nil {
				return fmt.Errorf("the NATS connection is closed: %s", RedactURLs(cause.Error()))
			}
			return errors.New("the NATS connection is closed")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// loop takes one slot per message, then reads the next message and hands it to a goroutine.
// It returns when the subscription closes: true if it closed on its own.
func (w *Worker) loop(ctx context.Context, nc *nats.Conn, e endpoint, sub *nats.Subscription, slots chan struct{}, inFlight *sync.WaitGroup) bool {
	for {
		slots <- struct{}{}
		msg, err := sub.NextMsg(time.Hour)
		if err != nil {
			<-slots
			if errors.Is(err, nats.ErrTimeout) {
				continue
			}
			// Closed by the drain (ErrBadSubscription) or with the connection.
			return !errors.Is(err, nats.ErrBadSubscription)
		}
		atomic.AddInt64(&w.stats.Received, 1)
		inFlight.Add(1)
		go func() {
			defer func() { <-slots; inFlight.Done() }()
			w.one(ctx, nc, e, msg)
		}()
	}
}

// one handles one message.
func (w *Worker) one(parent context.Context, nc *nats.Conn, e endpoint, msg *nats.Msg) {
	header := func(name string) string {
		if msg.Header == nil {
			return ""
		}
		return msg.Header.Get(name)
	}
	info := &Context{Command: e.command, RequestID: header(HeaderRequestID), OperationID: header(HeaderOperationID), Log: w.Log, Trace: traceOf(msg.Header)}
	if info.Trace.Valid() {
		parent = WithTrace(parent, info.Trace)
	}
	deadline, hasDeadline := parseDeadline(header(HeaderDeadlineUnixMs))
	if hasDeadline {
		info.Deadline = deadline
	}
	if e.after != nil || msg.Reply == "" {
		// An after-callback: nobody waits, nothing is answered.
		if e.after == nil {
			w.Log.Log(LevelInfo, "a message without a reply subject: skipped", "request_id", info.RequestID)
			return
		}
		info.Context = parent
		if err := e.after(info, msg.Data); err != nil {
			w.Log.Log(LevelWarn, "after-callback not handled", "command", e.command, "request_id", info.RequestID, "cause", err)
			return
		}
		atomic.AddInt64(&w.stats.After, 1)
		return
	}
	if hasDeadline && isPast(deadline, time.Now()) {
		atomic.AddInt64(&w.stats.SkippedLate, 1)
		w.Log.Log(LevelInfo, "skipped: past its deadline, the gateway has answered already", "request_id", info.RequestID)
		return
	}
	ctx := parent
	if hasDeadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(parent, deadline)
		defer cancel()
	}
	info.Context = ctx
	started := time.Now()
	answer := e.before(info, msg.Data)
	if hasDeadline && isPast(deadline, time.Now()) {
		atomic.AddInt64(&w.stats.SkippedLate, 1)
		w.Log.Log(LevelInfo, "not replied: the handler finished after the deadline", "request_id", info.RequestID, "took", time.Since(started).Round(time.Millisecond))
		return
	}
	reply := &nats.Msg{Subject: msg.Reply, Data: answer.body}
	if answer.serviceCode != 0 {
		reply.Data = nil
		reply.Header = nats.Header{}
		reply.Header.Set(HeaderServiceError, answer.serviceText)
		reply.Header.Set(HeaderServiceErrorCode, fmt.Sprint(answer.serviceCode))
		w.Log.Log(LevelWarn, "replied with a service error", "request_id", info.RequestID, "code", answer.serviceCode, "reason", answer.serviceText)
	}
	if err := nc.PublishMsg(reply); err != nil {
		w.Log.Log(LevelWarn, "cannot send the reply", "request_id", info.RequestID, "cause", err)
		return
	}
	atomic.AddInt64(&w.stats.Replied, 1)
}

// ReadyLine is what Run prints on stdout once the subscriptions are confirmed; harnesses wait
// for "worker ready".
func (w *Worker) ReadyLine() string {
	return fmt.Sprintf("worker ready on %s (queue %s)", strings.Join(w.Subjects(), ", "), QueueGroup)
}

// Run connects with NATS_URL and the WORKER_NATS_* files, serves until SIGINT or SIGTERM,
// drains and closes the connection. It prints the ready line on stdout.
func Run(w *Worker) error {
	nc, err := ConnectFromEnv(w.Name, w.Log)
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, stop := SignalContext()
	defer stop()
	err = w.Serve(ctx, nc, func() { fmt.Fprintln(os.Stdout, w.ReadyLine()) })
	if errors.Is(err, context.Canceled) {
		// Stopped before the first connection: nothing to drain.
		return nil
	}
	return err
}
