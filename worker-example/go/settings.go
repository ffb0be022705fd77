package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	ow "github.com/openim-gateway/openim-gateway/worker-kit/go"
)

// The settings, all from the environment: the same variables as the other example workers.
const (
	envSubjectPrefix    = "WORKER_SUBJECT_PREFIX"
	envBannedWords      = "WORKER_BANNED_WORDS"
	envMaxNicknameChars = "WORKER_MAX_NICKNAME_CHARS"
	envConcurrency      = "WORKER_CONCURRENCY"
	envLogLevel         = "WORKER_LOG_LEVEL"
	maxConcurrency      = 10000
)

// variables lists every setting with its default and its rule, as --help shows them.
var variables = []struct{ name, fallback, rule string }{
	{ow.EnvNatsURL, ow.DefaultNatsURL, "one NATS URL (nats:// or tls://) or a comma-separated list; user:password@ or token@ authenticate"},
	{envSubjectPrefix, ow.DefaultSubjectPrefix, "a NATS subject without wildcards; must match the gateway's GATEWAY_SUBJECT_PREFIX"},
	{envBannedWords, defaultBannedWords, "comma-separated words refused in nicknames, case-insensitively; empty: none"},
	{envMaxNicknameChars, strconv.Itoa(defaultMaxNickname), "1..=255: the longest nickname allowed, in characters"},
	{envConcurrency, strconv.Itoa(ow.DefaultConcurrency), "1..=10000: requests handled at once; more wait in the NATS client"},
	{envLogLevel, "info", "debug, info, warn or error; empty means the default"},
	{ow.EnvNatsCreds, "unset", "a creds file (user JWT and nkey seed); not with an nkey"},
	{ow.EnvNatsNkey, "unset", "a file holding a user nkey seed (SU...); not with a creds file"},
	{ow.EnvNatsTLSCA, "unset (the system's roots)", "a PEM CA file; set: TLS is required"},
	{ow.EnvNatsTLSCert, "unset", "a PEM client certificate, with WORKER_NATS_TLS_KEY"},
	{ow.EnvNatsTLSKey, "unset", "the PEM private key of WORKER_NATS_TLS_CERT"},
}

// Settings is everything the worker needs to start, parsed and checked.
type Settings struct {
	Servers     []string
	Prefix      string
	Rules       Rules
	Concurrency int
	LogLevel    ow.Level
	Security    ow.Security
}

// settingsHelp is the settings part of --help.
func settingsHelp() string {
	var text strings.Builder
	text.WriteString("Settings (environment variables; a bad one stops the start with exit code 2):\n")
	for _, v := range variables {
		fmt.Fprintf(&text, "  %s\n      default: %s\n      %s\n", v.name, v.fallback, v.rule)
	}
	return text.String()
}

// readSettings checks every variable and reports every problem at once, one line each, in a
// fixed order: values that are not UTF-8, WORKER_* names that are no setting, then each bad
// value. lookup returns a variable's value and whether it is set; names lists every variable
// of the environment.
func readSettings(lookup func(string) (string, bool), names []string) (Settings, []string) {
	var problems []string
	bad := func(name, value, rule string) {
		problems = append(problems, fmt.Sprintf("%s=%q is not valid: %s", name, value, rule))
	}
	get := func(name string) (string, bool) {
		value, set := lookup(name)
		if set && !utf8.ValidString(value) {
			bad(name, strings.ToValidUTF8(value, "\uFFFD"), "must be valid UTF-8")
			return "", false
		}
		return value, set
	}
	problems = append(problems, unknownSettings(names)...)
	settings := Settings{Prefix: ow.DefaultSubjectPrefix, Concurrency: ow.DefaultConcurrency, LogLevel: ow.LevelInfo}

	url, set := get(ow.EnvNatsURL)
	if !set {
		url = ow.DefaultNatsURL
	}
	if servers, err := ow.ParseServers(url); err != nil {
		problems = append(problems, err.Error())
	} else {
		settings.Servers = servers
	}
	if prefix, set := get(envSubjectPrefix); set {
		if validPrefix(prefix) {
			settings.Prefix = prefix
		} else {
			bad(envSubjectPrefix, prefix, "must be a NATS subject without wildcards or whitespace, such as openim.callback")
		}
	}
	maxChars := defaultMaxNickname
	if value, set := get(envMaxNicknameChars); set {
		if n, ok := integerIn(value, 1, maxNicknameLimit); ok {
			maxChars = n
		} else {
			bad(envMaxNicknameChars, value, fmt.Sprintf("must be an integer in 1..=%d", maxNicknameLimit))
		}
	}
	if value, set := get(envConcurrency); set {
		if n, ok := integerIn(value, 1, maxConcurrency); ok {
			settings.Concurrency = n
		} else {
			bad(envConcurrency, value, fmt.Sprintf("must be an integer in 1..=%d", maxConcurrency))
		}
	}
	if value, set := get(envLogLevel); set && strings.TrimSpace(value) != "" {
		if level, err := ow.ParseLevel(value); err == nil {
			settings.LogLevel = level
		} else {
			bad(envLogLevel, value, err.Error())
		}
	}
	words, set := get(envBannedWords)
	if !set {
		words = defaultBannedWords
	}
	settings.Rules = NewRules(strings.Split(words, ","), maxChars)
	security := ow.Security{}
	security.CredsFile, _ = get(ow.EnvNatsCreds)
	security.NkeyFile, _ = get(ow.EnvNatsNkey)
	security.TLSCA, _ = get(ow.EnvNatsTLSCA)
	security.TLSCert, _ = get(ow.EnvNatsTLSCert)
	security.TLSKey, _ = get(ow.EnvNatsTLSKey)
	for _, problem := range security.Check() {
		problems = append(problems, problem.Error())
	}
	settings.Security = security
	return settings, problems
}

// integerIn reads a decimal integer in min..=max, nothing else (no sign, no spaces).
func integerIn(value string, min, max int) (int, bool) {
	for _, r := range value {
		if r < '0' || r > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(value)
	if err != nil || n < min || n > max {
		return 0, false
	}
	return n, true
}

// validPrefix: a literal subject, tokens separated by dots, no wildcards, no white space.
func validPrefix(prefix string) bool {
	if prefix == "" {
		return false
	}
	for _, token := range strings.Split(prefix, ".") {
		if token == "" || strings.ContainsAny(token, "*>") || strings.IndexFunc(token, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
			return false
		}
	}
	return true
}

// unknownSettings names every WORKER_* variable that is no setting, with the nearest setting
// when one is close; never the value, which may be a mistyped secret.
func unknownSettings(names []string) []string {
	known := map[string]bool{}
	for _, v := range variables {
		known[v.name] = true
	}
	seen := map[string]bool{}
	var unknown []string
	for _, name := range names {
		if strings.HasPrefix(name, "WORKER_") && !known[name] && !seen[name] {
			seen[name] = true
			unknown = append(unknown, name)
		}
	}
	sort.Strings(unknown)
	lines := make([]string, 0, len(unknown))
	for _, name := range unknown {
		if nearest, ok := closestSetting(name); ok {
			lines = append(lines, fmt.Sprintf("%s is not a setting of this worker: did you mean %s?", name, nearest))
		} else {
			lines = append(lines, fmt.Sprintf("%s is not a setting of this worker: --help lists every setting", name))
		}
	}
	return lines
}

func closestSetting(name string) (string, bool) {
	best, bestDistance := "", -1
	for _, v := range variables {
		limit := len(v.name) / 5
		if limit < 3 {
			limit = 3
		}
		if d := editDistance(name, v.name); d <= limit && (bestDistance < 0 || d < bestDistance) {
			best, bestDistance = v.name, d
		}
	}
	return best, bestDistance >= 0
}

// editDistance counts insertions, deletions, substitutions and swaps of neighbours.
func editDistance(a, b string) int {
	x, y := []rune(a), []rune(b)
	d := make([][]int, len(x)+1)
	for i := range d {
		d[i] = make([]int, len(y)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(x); i++ {
		for j := 1; j <= len(y); j++ {
			cost := 1
			if x[i-1] == y[j-1] {
				cost = 0
			}
			d[i][j] = minInt(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && x[i-1] == y[j-2] && x[i-2] == y[j-1] {
				d[i][j] = minInt(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(x)][len(y)]
}

func minInt(first int, rest ...int) int {
	for _, n := range rest {
		if n < first {
			first = n
		}
	}
	return first
}
