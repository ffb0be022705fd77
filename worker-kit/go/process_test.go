package openimworker

// Tests against a real nats-server (NATS_SERVER_BIN) and the real gateway (OPENIM_GATEWAY_BIN);
// scripts/test-kit-go sets both, and REFUSEADMIN_BIN, the README's worker built.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

const memberInfo = "callbackBeforeSetGroupMemberInfoCommand"

func requireEnv(t *testing.T, name string) string {
	t.Helper()
	value := os.Getenv(name)
	if value == "" {
		t.Fatalf("%s is not set: run scripts/test-kit-go", name)
	}
	return value
}

func freePort(t *testing.T) int {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	return listener.Addr().(*net.TCPAddr).Port
}

// process is a child whose output lines are collected.
type process struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

func start(t *testing.T, env []string, argv ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(argv[0], argv[1:]...), done: make(chan struct{})}
	p.cmd.Env = env
	stdout, _ := p.cmd.StdoutPipe()
	stderr, _ := p.cmd.StderrPipe()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pumps sync.WaitGroup
	for _, stream := range []io.Reader{stdout, stderr} {
		pumps.Add(1)
		go func(stream io.Reader) {
			defer pumps.Done()
			scanner := bufio.NewScanner(stream)
			for scanner.Scan() {
				p.mu.Lock()
				p.lines = append(p.lines, scanner.Text())
				p.mu.Unlock()
			}
		}(stream)
	}
	go func() { pumps.Wait(); _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); <-p.done })
	return p
}

func (p *process) waitFor(t *testing.T, text string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		for _, line := range p.lines {
			if strings.Contains(line, text) {
				p.mu.Unlock()
				return
			}
		}
		p.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t.Fatalf("%s never printed %q:\n%s", p.cmd.Path, text, strings.Join(p.lines, "\n"))
}

func baseEnv() []string {
	var env []string
	for _, entry := range os.Environ() {
		if !strings.HasPrefix(entry, "NATS_") && !strings.HasPrefix(entry, "WORKER_") && !strings.HasPrefix(entry, "GATEWAY_") {
			env = append(env, entry)
		}
	}
	return env
}

func startNats(t *testing.T) string {
	port := freePort(t)
	server := start(t, baseEnv(), requireEnv(t, "NATS_SERVER_BIN"), "-a", "127.0.0.1", "-p", fmt.Sprint(port))
	server.waitFor(t, "Server is ready")
	return fmt.Sprintf("nats://127.0.0.1:%d", port)
}

func startGateway(t *testing.T, natsURL string) string {
	port := freePort(t)
	gateway := start(t, append(baseEnv(), "NATS_URL="+natsURL, fmt.Sprintf("GATEWAY_LISTEN=127.0.0.1:%d", port), "RUST_LOG=warn"),
		requireEnv(t, "OPENIM_GATEWAY_BIN"))
	gateway.waitFor(t, "openim-gateway listening on")
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if response, err := http.Get(base + "/readyz"); err == nil {
			response.Body.Close()
			if response.StatusCode == 200 {
				return base
			}
		}
	}
	t.Fatal("the gateway's /readyz never answered 200")
	return ""
}

func connect(t *testing.T, url string) *nats.Conn {
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// serve runs w on its own connection until the returned stop is called; stop returns Serve's
// error.
func serve(t *testing.T, w *Worker, url string) (stop func() error) {
	nc, err := Connect("kit-test", []string{url}, Security{}, w.Log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	result := make(chan error, 1)
	go func() { result <- w.Serve(ctx, nc, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-result:
		t.Fatalf("Serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the worker never became ready")
	}
	return func() error { cancel(); return <-result }
}

func request(deadline time.Time, body string) *nats.Msg {
	msg := nats.NewMsg("openim.callback." + memberInfo)
	msg.Header.Set(HeaderRequestID, "test-request")
	msg.Header.Set(HeaderDeadlineUnixMs, fmt.Sprint(deadline.UnixMilli()))
	msg.Data = []byte(body)
	return msg
}

func quietLogger() *Logger { return NewLogger(io.Discard, LevelError) }

func TestDeadlineMeansNoWorkAndNoReply(t *testing.T) {
	url := startNats(t)
	var calls int64
	w := New("deadline-test")
	w.Log = quietLogger()
	Handle(w, memberInfo, func(c *Context, r *BeforeSetGroupMemberInfoCommandRequest) (Decision, error) {
		atomic.AddInt64(&calls, 1)
		if r.NickName != nil && *r.NickName == "slow" {
			<-c.Done() // the context ends at the deadline
			time.Sleep(20 * time.Millisecond)
		}
		return Allow(), nil
	})
	stop := serve(t, w, url)
	client := connect(t, url)

	// Past its deadline: the handler is not called and nothing comes back.
	if reply, err := client.RequestMsg(request(time.Now().Add(-time.Second), `{"nickName":"a"}`), 700*time.Millisecond); err == nil {
		t.Fatalf("a reply came back after the deadline: %s", reply.Data)
	}
	if n := atomic.LoadInt64(&calls); n != 0 {
		t.Fatalf("the handler ran %d times for a late request", n)
	}
	// A handler that finishes after the deadline: its answer is not sent.
	if reply, err := client.RequestMsg(request(time.Now().Add(150*time.Millisecond), `{"nickName":"slow"}`), time.Second); err == nil {
		t.Fatalf("a reply came back after the deadline: %s", reply.Data)
	}
	// A live request is answered, without the request's headers.
	reply, err := client.RequestMsg(request(time.Now().Add(5*time.Second), `{"nickName":"a"}`), 5*time.Second)
	if err != nil {
		t.Fatalf("live request: %v", err)
	}
	if len(reply.Header) != 0 || string(reply.Data) != `{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}` {
		t.Fatalf("reply: %v %s", reply.Header, reply.Data)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if s := w.Stats(); s.SkippedLate != 2 || s.Replied != 1 {
		t.Fatalf("stats: %+v", s)
	}
}

func TestServiceErrorForABadBody(t *testing.T) {
	url := startNats(t)
	w := New("bad-body-test")
	w.Log = quietLogger()
	Handle(w, memberInfo, func(*Context, *BeforeSetGroupMemberInfoCommandRequest) (Decision, error) { return Allow(), nil })
	stop := serve(t, w, url)
	defer stop()
	reply, err := connect(t, url).RequestMsg(request(time.Now().Add(5*time.Second), `not json`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if reply.Header.Get(HeaderServiceError) == "" || reply.Header.Get(HeaderServiceErrorCode) != "400" || len(reply.Data) != 0 {
		t.Fatalf("reply: %v %q", reply.Header, reply.Data)
	}
}

// TestDrainOnSigterm sends SIGTERM to this process while a slow worker holds hundreds of
// delivered requests: every one of them is answered before Serve returns.
func TestDrainOnSigtermUnderLoad(t *testing.T) {
	url := startNats(t)
	w := New("drain-test")
	w.Log = quietLogger()
	w.Concurrency = 8
	Handle(w, memberInfo, func(*Context, *BeforeSetGroupMemberInfoCommandRequest) (Decision, error) {
		time.Sleep(5 * time.Millisecond)
		return Allow(), nil
	})
	nc, err := Connect("drain-test", []string{url}, Security{}, w.Log)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, stop := SignalContext()
	defer stop()
	ready := make(chan struct{})
	result := make(chan error, 1)
	go func() { result <- w.Serve(ctx, nc, func() { close(ready) }) }()
	<-ready

	client := connect(t, url)
	var answered, refused int64
	inbox := nats.NewInbox()
	sub, err := client.Subscribe(inbox+".*", func(m *nats.Msg) {
		if m.Header.Get("Status") == "503" {
			atomic.AddInt64(&refused, 1)
		} else if json.Valid(m.Data) {
			atomic.AddInt64(&answered, 1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	const total = 400
	for i := 0; i < total; i++ {
		msg := request(time.Now().Add(30*time.Second), `{"nickName":"a"}`)
		msg.Reply = fmt.Sprintf("%s.%d", inbox, i)
		if err := client.PublishMsg(msg); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.Flush(); err != nil {
		t.Fatal(err)
	}
	// Everything is routed to the worker now; at 8 × 5 ms most of it is still waiting.
	repliedBefore := w.Stats().Replied
	if repliedBefore >= total {
		t.Fatalf("no load left at SIGTERM: %d replied already", repliedBefore)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-result:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after SIGTERM")
	}
	deadline := time.Now().Add(5 * time.Second)
	for atomic.LoadInt64(&answered) < total && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := atomic.LoadInt64(&answered); got != total || atomic.LoadInt64(&refused) != 0 {
		t.Fatalf("answered %d of %d (no responders %d), stats %+v", got, total, refused, w.Stats())
	}
	t.Logf("SIGTERM with %d of %d answered: %d of %d answered at exit, stats %+v", repliedBefore, total, total, total, w.Stats())
}

func TestAfterCallbacksAreReadNeverAnswered(t *testing.T) {
	url := startNats(t)
	w := New("after-test")
	w.Log = quietLogger()
	got := make(chan string, 1)
	HandleAfter(w, "callbackAfterSetGroupMemberInfoCommand", func(c *Context, r *AfterSetGroupMemberInfoCommandRequest) error {
		got <- r.GroupID + " " + c.RequestID
		return nil
	})
	stop := serve(t, w, url)
	defer stop()
	msg := nats.NewMsg("openim.callback.callbackAfterSetGroupMemberInfoCommand")
	msg.Header.Set(HeaderRequestID, "r-1")
	msg.Data = []byte(`{"callbackCommand":"callbackAfterSetGroupMemberInfoCommand","groupID":"g1","userID":"u"}`)
	client := connect(t, url)
	if err := client.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	select {
	case text := <-got:
		if text != "g1 r-1" {
			t.Fatalf("got %q", text)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the after-callback never reached the handler")
	}
}

// TestReadmeWorkerThroughTheGateway runs examples/refuseadmin, the README's worker, and POSTs
// OpenIM's real request bodies to the gateway.
func TestReadmeWorkerThroughTheGateway(t *testing.T) {
	url := startNats(t)
	base := startGateway(t, url)
	worker := start(t, append(baseEnv(), "NATS_URL="+url), requireEnv(t, "REFUSEADMIN_BIN"))
	worker.waitFor(t, "worker ready")
	fixtures := filepath.Join("..", "..", "fixtures", "openim")
	for fixture, want := range map[string]string{
		"before_set_group_member_info.nickname_only.json": `{"actionCode":0,"errCode":5001,"errMsg":"nickname not allowed","errDlt":"","nextCode":1}`,
		"before_set_group_member_info.role_only.json":     `{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}`,
	} {
		body, err := os.ReadFile(filepath.Join(fixtures, fixture))
		if err != nil {
			t.Fatal(err)
		}
		post, _ := http.NewRequest("POST", base+"/callbackExample/"+memberInfo, strings.NewReader(string(body)))
		post.Header.Set("Content-Type", "application/json; charset=utf-8")
		post.Header.Set("operationID", "kit-go-test")
		response, err := http.DefaultClient.Do(post)
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(response.Body)
		response.Body.Close()
		if source := response.Header.Get("X-Decision-Source"); source != "worker" || strings.TrimSpace(string(answer)) != want {
			t.Errorf("%s: %s %s, want worker %s", fixture, source, answer, want)
		}
	}
	_ = worker.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-worker.done:
		if code := worker.cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("exit code %d after SIGTERM", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the worker did not exit after SIGTERM")
	}
}

// syncBuffer is a log sink tests read while the client writes.
type syncBuffer struct {
	mu   sync.Mutex
	text strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.text.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.text.String()
}

// TestAFailureIsLoggedOncePerServerAndCause: the client retries twice a second, the log says it
// once, naming the server and the cause, never the password.
func TestAFailureIsLoggedOncePerServerAndCause(t *testing.T) {
	port := freePort(t) // nothing listens there
	var out syncBuffer
	nc, err := Connect("failure-test", []string{fmt.Sprintf("nats://bob:s3cretpw@127.0.0.1:%d", port)}, Security{}, NewLogger(&out, LevelInfo))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	nc.Close()
	text := out.String()
	lines := strings.Count(text, "cannot connect to NATS")
	if lines != 1 || !strings.Contains(text, fmt.Sprintf("server=127.0.0.1:%d", port)) || !strings.Contains(text, `cause="connection refused"`) || strings.Contains(text, "s3cretpw") {
		t.Fatalf("%d lines:\n%s", lines, text)
	}
}
