package openimworker

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

// PingInterval is how often the client pings the server, so that a half-open connection is
// noticed in seconds rather than minutes.
const PingInterval = 5 * time.Second

// FailureLogInterval: a failure to reach a server is logged once per server and cause in it.
const FailureLogInterval = 30 * time.Second

// DefaultNatsURL is where a local nats-server listens by default.
const DefaultNatsURL = "nats://127.0.0.1:4222"

// The environment variables ConnectFromEnv reads, the same as the other kits' workers.
const (
	EnvNatsURL     = "NATS_URL"
	EnvNatsCreds   = "WORKER_NATS_CREDS"
	EnvNatsNkey    = "WORKER_NATS_NKEY"
	EnvNatsTLSCA   = "WORKER_NATS_TLS_CA"
	EnvNatsTLSCert = "WORKER_NATS_TLS_CERT"
	EnvNatsTLSKey  = "WORKER_NATS_TLS_KEY"
)

// Security is how the worker authenticates to NATS and checks the server. A user and password
// or a token go in the URL (nats://user:password@host:4222, nats://token@host:4222).
type Security struct {
	// Token authenticates with a token when the URL has none.
	Token string
	// CredsFile is a creds file (user JWT and nkey seed); not with NkeyFile.
	CredsFile string
	// NkeyFile is a file holding a user nkey seed (SU...).
	NkeyFile string
	// TLSCA is a PEM CA file; set, TLS is required.
	TLSCA string
	// TLSCert and TLSKey are a PEM client certificate and its key, both or neither.
	TLSCert, TLSKey string
}

// SecurityFromEnv reads the WORKER_NATS_* variables; it checks that each named file can be
// read and that the pairs are consistent, reporting every problem.
func SecurityFromEnv() (Security, []error) {
	s := Security{
		CredsFile: os.Getenv(EnvNatsCreds),
		NkeyFile:  os.Getenv(EnvNatsNkey),
		TLSCA:     os.Getenv(EnvNatsTLSCA),
		TLSCert:   os.Getenv(EnvNatsTLSCert),
		TLSKey:    os.Getenv(EnvNatsTLSKey),
	}
	return s, s.Check()
}

// Check reports every file that cannot be read and every inconsistent pair.
func (s Security) Check() []error {
	var problems []error
	for _, file := range []struct{ name, path string }{
		{EnvNatsCreds, s.CredsFile}, {EnvNatsNkey, s.NkeyFile}, {EnvNatsTLSCA, s.TLSCA},
		{EnvNatsTLSCert, s.TLSCert}, {EnvNatsTLSKey, s.TLSKey},
	} {
		if file.path == "" {
			continue
		}
		if f, err := os.Open(file.path); err != nil {
			problems = append(problems, fmt.Errorf("%s=%q is not valid: must be a readable file (%v)", file.name, file.path, err))
		} else {
			f.Close()
		}
	}
	if s.CredsFile != "" && s.NkeyFile != "" {
		problems = append(problems, fmt.Errorf("%s=%q is not valid: must not be set with %s: a server accepts one way to authenticate", EnvNatsNkey, s.NkeyFile, EnvNatsCreds))
	}
	if (s.TLSCert == "") != (s.TLSKey == "") {
		if s.TLSCert != "" {
			problems = append(problems, fmt.Errorf("%s=%q is not valid: must come with %s", EnvNatsTLSCert, s.TLSCert, EnvNatsTLSKey))
		} else {
			problems = append(problems, fmt.Errorf("%s=%q is not valid: must come with %s", EnvNatsTLSKey, s.TLSKey, EnvNatsTLSCert))
		}
	}
	return problems
}

// ParseServers checks NATS_URL: one URL (nats://, tls://, ws://, wss://, or host:port) or a
// comma-separated list. Errors show the value with passwords and tokens hidden.
func ParseServers(value string) ([]string, error) {
	const rule = "must be a NATS URL such as nats://127.0.0.1:4222, or a comma-separated list of them"
	shown := RedactURLs(value)
	var servers []string
	for _, entry := range strings.Split(value, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			return nil, fmt.Errorf("%s=%q is not valid: %s", EnvNatsURL, shown, rule)
		}
		withScheme := entry
		if !strings.Contains(entry, "://") {
			withScheme = "nats://" + entry
		}
		parsed, err := url.Parse(withScheme)
		if err != nil || parsed.Host == "" {
			return nil, fmt.Errorf("%s=%q is not valid: %s", EnvNatsURL, shown, rule)
		}
		switch parsed.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return nil, fmt.Errorf("%s=%q is not valid: %s", EnvNatsURL, shown, rule)
		}
		if port := parsed.Port(); port != "" {
			if _, err := net.LookupPort("tcp", port); err != nil {
				return nil, fmt.Errorf("%s=%q is not valid: %s", EnvNatsURL, shown, rule)
			}
		}
		if (parsed.Path != "" && parsed.Path != "/") || parsed.RawQuery != "" || parsed.Fragment != "" {
			return nil, fmt.Errorf("%s=%q is not valid: must not have a path, query or fragment: a / ? # or @ in a password or token must be percent-encoded (%%2F %%3F %%23 %%40)", EnvNatsURL, shown)
		}
		servers = append(servers, withScheme)
	}
	return servers, nil
}

// RedactURLs hides what sits before the last @ of each authority in a list of URLs: a token
// shows as ***, user:password as user:***.
func RedactURLs(value string) string {
	entries := strings.Split(value, ",")
	for i, entry := range entries {
		start := 0
		if scheme := strings.Index(entry, "://"); scheme >= 0 {
			start = scheme + 3
		}
		at := strings.LastIndex(entry, "@")
		if at < start {
			continue
		}
		userinfo := entry[start:at]
		if colon := strings.Index(userinfo, ":"); colon >= 0 {
			userinfo = userinfo[:colon] + ":***"
		} else {
			userinfo = "***"
		}
		entries[i] = entry[:start] + userinfo + entry[at:]
	}
	return strings.Join(entries, ",")
}

// hostPorts is the servers without their credentials, for log lines.
func hostPorts(servers []string) []string {
	shown := make([]string, 0, len(servers))
	for _, server := range servers {
		if parsed, err := url.Parse(server); err == nil {
			shown = append(shown, parsed.Host)
		}
	}
	return shown
}

// Connect connects as name (what the server shows in /connz) to servers, in the order given.
// It retries until a server answers and reconnects forever after; it returns at once, and
// the worker's Start waits for the connection. Failures are logged once per server and cause
// every FailureLogInterval, naming the server and never a password.
func Connect(name string, servers []string, security Security, logger *Logger) (*nats.Conn, error) {
	if logger == nil {
		logger = DefaultLogger()
	}
	failures := &failureLog{last: map[string]time.Time{}, logger: logger}
	options := []nats.Option{
		nats.Name(name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.PingInterval(PingInterval),
		nats.SetCustomDialer(&loggingDialer{failures: failures}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Log(LevelWarn, "disconnected from NATS: callbacks get the gateway's default until reconnected", "cause", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			logger.Log(LevelInfo, "reconnected to NATS", "server", nc.ConnectedAddr())
		}),
		nats.ErrorHandler(func(nc *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) {
				logger.Log(LevelWarn, "slow consumer: the client dropped requests meant for this worker")
				return
			}
			server := nc.ConnectedAddr()
			if server == "" {
				server = strings.Join(hostPorts(servers), ",")
			}
			failures.log(server, RedactURLs(err.Error()))
		}),
	}
	if security.Token != "" {
		options = append(options, nats.Token(security.Token))
	}
	if security.CredsFile != "" {
		options = append(options, nats.UserCredentials(security.CredsFile))
	}
	if security.NkeyFile != "" {
		option, err := nats.NkeyOptionFromSeed(security.NkeyFile)
		if err != nil {
			return nil, fmt.Errorf("cannot use the nkey file %s: %v", security.NkeyFile, err)
		}
		options = append(options, option)
	}
	if security.TLSCA != "" {
		options = append(options, nats.RootCAs(security.TLSCA), nats.Secure())
	}
	if security.TLSCert != "" && security.TLSKey != "" {
		options = append(options, nats.ClientCert(security.TLSCert, security.TLSKey), nats.Secure())
	}
	nc, err := nats.Connect(strings.Join(servers, ","), options...)
	if err != nil {
		// A URL error may quote the URL: show the list redacted instead.
		return nil, fmt.Errorf("cannot connect to NATS (%s): %s", strings.Join(hostPorts(servers), ", "), RedactURLs(err.Error()))
	}
	go watchConnectErrors(nc, strings.Join(hostPorts(servers), ","), failures)
	return nc, nil
}

// ConnectFromEnv connects with NATS_URL (default nats://127.0.0.1:4222) and the WORKER_NATS_*
// files.
func ConnectFromEnv(name string, logger *Logger) (*nats.Conn, error) {
	value := os.Getenv(EnvNatsURL)
	if strings.TrimSpace(value) == "" {
		value = DefaultNatsURL
	}
	servers, err := ParseServers(value)
	if err != nil {
		return nil, err
	}
	security, problems := SecurityFromEnv()
	if len(problems) > 0 {
		texts := make([]string, len(problems))
		for i, problem := range problems {
			texts[i] = problem.Error()
		}
		return nil, errors.New(strings.Join(texts, "; "))
	}
	return Connect(name, servers, security, logger)
}

// watchConnectErrors logs what the server refused while the client retries (a wrong password,
// creds or TLS): the client records it without a callback. Failures to dial are logged by the
// dialer, with their server. It ends when the connection closes.
func watchConnectErrors(nc *nats.Conn, servers string, failures *failureLog) {
	for !nc.IsClosed() {
		if !nc.IsConnected() {
			if err := nc.LastError(); err != nil {
				var netErr *net.OpError
				if !errors.As(err, &netErr) {
					failures.log(servers, RedactURLs(err.Error()))
				}
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// failureLog remembers when each (server, cause) was last logged.
type failureLog struct {
	mu     sync.Mutex
	last   map[string]time.Time
	logger *Logger
}

// firstInInterval says whether cause for server was not logged within the interval before
// now, and records now when so.
func (f *failureLog) firstInInterval(server, cause string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := server + "\x00" + cause
	if at, seen := f.last[key]; seen && now.Sub(at) < FailureLogInterval {
		return false
	}
	f.last[key] = now
	return true
}

func (f *failureLog) log(server, cause string) {
	if f.firstInInterval(server, cause, time.Now()) {
		f.logger.Log(LevelWarn, fmt.Sprintf("cannot connect to NATS: callbacks get the gateway's default until connected; retrying (logged once per server and cause every %ds)", int(FailureLogInterval.Seconds())), "server", server, "cause", cause)
	}
}

// loggingDialer dials like the client would and logs each failure with its server and cause.
type loggingDialer struct {
	failures *failureLog
}

func (d *loggingDialer) Dial(network, address string) (net.Conn, error) {
	conn, err := (&net.Dialer{Timeout: 2 * time.Second}).Dial(network, address)
	if err != nil {
		d.failures.log(address, dialCause(err))
	}
	return conn, err
}

// dialCause is a short cause without the address (the line names the server already).
func dialCause(err error) string {
	var dns *net.DNSError
	var netErr net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.As(err, &dns):
		return "cannot resolve the host: " + dns.Err
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timed out"
	default:
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			return op.Err.Error()
		}
		return err.Error()
	}
}
