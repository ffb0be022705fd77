// Command openim-worker-example-go is the example worker in Go, on the Go worker kit: it
// decides callbackBeforeSetGroupMemberInfoCommand with the same rules and WORKER_* settings as
// the Rust, Python and Node example workers (worker-example/README.md).
//
// Exit codes: 0 after SIGINT/SIGTERM, --help or --version; 1 when the worker cannot run; 2 for
// a bad setting or an unknown argument.
package main

import (
	"fmt"
	"os"
	"strings"

	ow "github.com/openim-gateway/openim-gateway/worker-kit/go"
)

// program names every line printed about a setting, so that a shared log says who refused.
const program = "openim-worker-example-go"

// version is this worker's version; the kit's protocol version comes with --version.
const version = "1.0.0"

const exitBadSettings = 2

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	for _, arg := range args {
		switch arg {
		case "-h", "--help":
			fmt.Printf("%s %s\nAn example worker: decides %s for the gateway\n\nUsage: %s [--help] [--version]\n\n%s", program, version, commandSetGroupInfo, program, settingsHelp())
			return 0
		case "-V", "--version":
			fmt.Printf("%s %s (worker kit %s)\n", program, version, ow.Version)
			return 0
		default:
			fmt.Fprintf(os.Stderr, "%s: unknown argument %q: the worker is configured by its environment, see --help\n", program, arg)
			return exitBadSettings
		}
	}
	names := make([]string, 0)
	for _, entry := range os.Environ() {
		if name, _, found := strings.Cut(entry, "="); found {
			names = append(names, name)
		}
	}
	settings, problems := readSettings(os.LookupEnv, names)
	if len(problems) > 0 {
		for _, problem := range problems {
			fmt.Fprintf(os.Stderr, "%s: %s\n", program, problem)
		}
		return exitBadSettings
	}
	logger := ow.NewLogger(os.Stderr, settings.LogLevel)
	logger.Log(ow.LevelInfo, "connecting to NATS", "servers", strings.Join(hostsOf(settings.Servers), ","), "banned_words", len(settings.Rules.BannedWords), "max_nickname_chars", settings.Rules.MaxNicknameChars, "concurrency", settings.Concurrency)
	nc, err := ow.Connect(program, settings.Servers, settings.Security, logger)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", program, err)
		return 1
	}
	defer nc.Close()
	w := newWorker(settings, logger)
	ctx, stop := ow.SignalContext()
	defer stop()
	err = w.Serve(ctx, nc, func() { fmt.Println(w.ReadyLine()) })
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", program, err)
		return 1
	}
	return 0
}

// newWorker is the worker on the kit: one handler, decide, and its debug line.
func newWorker(settings Settings, logger *ow.Logger) *ow.Worker {
	w := ow.New(program)
	w.Prefix = settings.Prefix
	w.Concurrency = settings.Concurrency
	w.Log = logger
	rules := settings.Rules
	ow.Handle(w, commandSetGroupInfo, func(c *ow.Context, request *memberInfoRequest) (ow.Decision, error) {
		decision, err := decide(rules, &request.BeforeSetGroupMemberInfoCommandRequest)
		if c.Log.Enabled(ow.LevelDebug) {
			word := ""
			if request.NickName != nil {
				word, _ = rules.bannedWordIn(normaliseWhitespace(*request.NickName))
			}
			c.Log.Log(ow.LevelDebug, "decided", "request_id", c.RequestID, "reject", decision.IsReject(), "banned_word", word)
		}
		return decision, err
	})
	return w
}

// hostsOf is the servers without credentials, for the log.
func hostsOf(servers []string) []string {
	hosts := make([]string, 0, len(servers))
	for _, server := range servers {
		host := server
		if i := strings.Index(host, "://"); i >= 0 {
			host = host[i+3:]
		}
		if i := strings.LastIndex(host, "@"); i >= 0 {
			host = host[i+1:]
		}
		hosts = append(hosts, host)
	}
	return hosts
}
