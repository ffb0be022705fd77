package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	ow "github.com/openim-gateway/openim-gateway/worker-kit/go"
)

// caseTable is the part of worker-example/cases.json these tests read.
type caseTable struct {
	Suites []struct {
		Name  string            `json:"name"`
		Env   map[string]string `json:"env"`
		Cases []struct {
			Name    string          `json:"name"`
			Fixture string          `json:"fixture"`
			RawBody *string         `json:"raw_body"`
			Body    json.RawMessage `json:"body"`
			Expect  struct {
				Source string          `json:"source"`
				Answer json.RawMessage `json:"answer"`
			} `json:"expect"`
		} `json:"cases"`
	} `json:"suites"`
}

// TestTheCaseTable decides every case of the shared table without a network: an answer from
// the worker must equal the table's, a fallback:invalid_reply case must not parse.
func TestTheCaseTable(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var table caseTable
	if err := json.Unmarshal(raw, &table); err != nil {
		t.Fatal(err)
	}
	count := 0
	for _, suite := range table.Suites {
		settings, problems := readSettings(func(name string) (string, bool) {
			value, set := suite.Env[name]
			return value, set
		}, nil)
		if len(problems) > 0 {
			t.Fatalf("%s: %v", suite.Name, problems)
		}
		for _, c := range suite.Cases {
			body := []byte(c.Body)
			switch {
			case c.Fixture != "":
				if body, err = os.ReadFile(filepath.Join("..", "..", "fixtures", "openim", c.Fixture)); err != nil {
					t.Fatal(err)
				}
			case c.RawBody != nil:
				body = []byte(*c.RawBody)
			}
			var request memberInfoRequest
			parseErr := json.Unmarshal(body, &request)
			if c.Expect.Source != "worker" {
				if parseErr == nil {
					t.Errorf("%s / %s: parsed, want a bad request", suite.Name, c.Name)
				}
				count++
				continue
			}
			if parseErr != nil {
				t.Errorf("%s / %s: %v", suite.Name, c.Name, parseErr)
				continue
			}
			decision, err := decide(settings.Rules, &request.BeforeSetGroupMemberInfoCommandRequest)
			if err != nil {
				t.Errorf("%s / %s: %v", suite.Name, c.Name, err)
				continue
			}
			got, _ := json.Marshal(decision)
			var gotValue, wantValue interface{}
			_ = json.Unmarshal(got, &gotValue)
			_ = json.Unmarshal(c.Expect.Answer, &wantValue)
			if !reflect.DeepEqual(gotValue, wantValue) {
				t.Errorf("%s / %s: got %s, want %s", suite.Name, c.Name, got, c.Expect.Answer)
			}
			count++
		}
	}
	t.Logf("%d cases decided as the table says", count)
}

func TestLowercaseFollowsUnicodeFullMapping(t *testing.T) {
	for in, want := range map[string]string{
		"ADMİN":   "admi\u0307n",
		"ΟΔΟΣ":    "\u03bf\u03b4\u03bf\u03c2",
		"ΟΔΟΣ ΣΑ": "\u03bf\u03b4\u03bf\u03c2 \u03c3\u03b1",
		"Σ":       "\u03c3",
		"ABC":     "abc",
	} {
		if got := lowercase(in); got != want {
			t.Errorf("lowercase(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSettingsReportEveryProblemAtOnce(t *testing.T) {
	env := map[string]string{
		"NATS_URL":                  "http://a:1",
		"WORKER_MAX_NICKNAME_CHARS": "0",
		"WORKER_CONCURRENCY":        "many",
		"WORKER_LOG_LEVEL":          "loud",
		"WORKER_NATS_CREDS":         "/nonexistent/creds",
		"WORKER_SUBJECT_PREFIX":     "openim.*",
	}
	_, problems := readSettings(func(name string) (string, bool) { v, ok := env[name]; return v, ok },
		[]string{"WORKER_BANED_WORDS", "WORKER_CONCURENCY", "PATH", "WORKER_ZZZ"})
	want := []string{
		"WORKER_BANED_WORDS is not a setting of this worker: did you mean WORKER_BANNED_WORDS?",
		"WORKER_CONCURENCY is not a setting of this worker: did you mean WORKER_CONCURRENCY?",
		"WORKER_ZZZ is not a setting of this worker: --help lists every setting",
		`NATS_URL="http://a:1" is not valid: must be a NATS URL such as nats://127.0.0.1:4222, or a comma-separated list of them`,
		`WORKER_SUBJECT_PREFIX="openim.*" is not valid: must be a NATS subject without wildcards or whitespace, such as openim.callback`,
		`WORKER_MAX_NICKNAME_CHARS="0" is not valid: must be an integer in 1..=255`,
		`WORKER_CONCURRENCY="many" is not valid: must be an integer in 1..=10000`,
		`WORKER_LOG_LEVEL="loud" is not valid: must be one of debug, info, warn, error`,
	}
	if len(problems) != len(want)+1 || !reflect.DeepEqual(problems[:len(want)], want) || !strings.HasPrefix(problems[len(want)], `WORKER_NATS_CREDS="/nonexistent/creds" is not valid: must be a readable file`) {
		t.Fatalf("got\n%s", strings.Join(problems, "\n"))
	}
	settings, problems := readSettings(func(string) (string, bool) { return "", false }, nil)
	if len(problems) != 0 || settings.Concurrency != 64 || settings.Rules.MaxNicknameChars != 32 || len(settings.Rules.BannedWords) != 3 || settings.Prefix != "openim.callback" {
		t.Fatalf("defaults: %+v %v", settings, problems)
	}
}

// TestTheProgram runs the built binary (GO_EXAMPLE_BIN, from scripts/test-kit-go).
func TestTheProgram(t *testing.T) {
	binary := os.Getenv("GO_EXAMPLE_BIN")
	if binary == "" {
		t.Fatal("GO_EXAMPLE_BIN is not set: run scripts/test-kit-go")
	}
	runIt := func(env []string, args ...string) (string, string, int) {
		cmd := exec.Command(binary, args...)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), code
	}
	// NATS_URL points nowhere: --help and --version must not try to connect.
	env := []string{"NATS_URL=nats://127.0.0.1:1"}
	if out, _, code := runIt(env, "--help"); code != 0 || !strings.Contains(out, "WORKER_BANNED_WORDS") {
		t.Fatalf("--help: %d %s", code, out)
	}
	if out, _, code := runIt(env, "--version"); code != 0 || !strings.Contains(out, program+" "+version) || !strings.Contains(out, ow.Version) {
		t.Fatalf("--version: %d %s", code, out)
	}
	_, errOut, code := runIt(append(env, "WORKER_BANED_WORDS=x", "WORKER_MAX_NICKNAME_CHARS=abc"))
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	if code != 2 || len(lines) != 2 || !strings.HasPrefix(lines[0], program+": WORKER_BANED_WORDS is not a setting of this worker: did you mean WORKER_BANNED_WORDS?") ||
		lines[1] != program+`: WORKER_MAX_NICKNAME_CHARS="abc" is not valid: must be an integer in 1..=255` {
		t.Fatalf("bad settings: exit %d\n%s", code, errOut)
	}
	if _, errOut, code := runIt(append(env, "NATS_URL=nats://bob:Hunter2x@h:nope")); code != 2 || strings.Contains(errOut, "Hunter2x") {
		t.Fatalf("a bad URL: exit %d %s", code, errOut)
	}
	if _, _, code := runIt(env, "--frobnicate"); code != 2 {
		t.Fatalf("unknown argument: exit %d", code)
	}
}
