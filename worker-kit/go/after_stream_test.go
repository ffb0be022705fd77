package openimworker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const afterMemberInfo = "callbackAfterSetGroupMemberInfoCommand"

// TestAfterStreamReadsWhatItMissed: the gateway stores after-callbacks in its JetStream stream
// while no worker runs; the consumer started later reads them, a failed one comes back, and a
// body that does not parse is dropped for good.
func TestAfterStreamReadsWhatItMissed(t *testing.T) {
	port := freePort(t)
	server := start(t, baseEnv(), requireEnv(t, "NATS_SERVER_BIN"), "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", t.TempDir())
	server.waitFor(t, "Server is ready")
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	httpPort := freePort(t)
	gateway := start(t, append(baseEnv(), "NATS_URL="+url, fmt.Sprintf("GATEWAY_LISTEN=127.0.0.1:%d", httpPort),
		"GATEWAY_AFTER_STREAM=OPENIM_AFTER", "GATEWAY_AFTER_STREAM_MAX_BYTES=10000000", "RUST_LOG=warn"), requireEnv(t, "OPENIM_GATEWAY_BIN"))
	gateway.waitFor(t, "openim-gateway listening on")
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	body, err := os.ReadFile(filepath.Join("..", "..", "fixtures", "openim", "after_set_group_member_info.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for deadline := time.Now().Add(20 * time.Second); len(ids) < 2; {
		response, err := http.Post(base+"/callbackExample/"+afterMemberInfo, "application/json", strings.NewReader(string(body)))
		if err == nil {
			response.Body.Close()
			if response.Header.Get("X-Decision-Source") == "ack" && response.StatusCode == 200 {
				ids = append(ids, response.Header.Get("X-Request-Id"))
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway never stored the after-callbacks (%v)", err)
		}
		if len(ids) < 2 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	client := connect(t, url)
	js, err := client.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish("openim.callback."+afterMemberInfo, []byte(`[1]`)); err != nil {
		t.Fatal(err)
	}

	consumer := &AfterStream{Stream: "OPENIM_AFTER", Durable: "kit-go-test", Commands: []string{afterMemberInfo},
		NakDelay: 100 * time.Millisecond, Log: quietLogger()}
	var mu sync.Mutex
	calls := map[string]int{}
	done := map[string]bool{}
	nc, err := Connect("after-stream-test", []string{url}, Security{}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan error, 1)
	go func() {
		result <- consumer.Consume(ctx, nc, nil, func(_ context.Context, callback AfterCallback) error {
			request, err := ParseAfter[AfterSetGroupMemberInfoCommandRequest](callback)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			calls[callback.RequestID()]++
			if callback.RequestID() == ids[0] && calls[ids[0]] == 1 {
				return errors.New("the database is down")
			}
			if request.GroupID == "" || callback.Command != afterMemberInfo {
				return fmt.Errorf("unexpected %+v %s", request, callback.Command)
			}
			done[callback.RequestID()] = true
			return nil
		})
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		report := consumer.Report()
		if report.Acked == 2 && report.Terminated == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("report %+v, calls %v", report, calls)
		}
	}
	cancel()
	if err := <-result; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !done[ids[0]] || !done[ids[1]] || calls[ids[0]] != 2 || calls[ids[1]] != 1 {
		t.Fatalf("calls %v, done %v", calls, done)
	}
	info, err := js.ConsumerInfo("OPENIM_AFTER", "kit-go-test")
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 0 || info.NumPending != 0 {
		t.Fatalf("consumer: %d unacknowledged, %d pending", info.NumAckPending, info.NumPending)
	}
}
