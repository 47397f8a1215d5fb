// Command testsummary reads `go test -json` on stdin, prints what plain
// `go test` would (each package's ok/FAIL line, the output of failed
// tests), and ends with one line naming the skipped tests and how to
// enable them, so that skipped Postgres, browser and Tomcat tests are seen:
//
//	go test -race -json ./... | go run ./internal/testsummary
//
// It exits 1 if any test or package failed or the input had no test
// event, 0 otherwise; .ci/test also passes on go test's own status.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// reason is a kind of skip and how to enable those tests.
type reason struct {
	match  string // lowercase text of the skip message
	what   string
	enable string
}

var reasons = []reason{
	{"keygate_test_database_url", "need PostgreSQL", "set KEYGATE_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable"},
	{"chromium", "need Chromium", "apt-get install chromium (or set KEYGATE_CHROMIUM)"},
	{"tomcat", "need Tomcat", "run .ci/install-tomcat"},
}

func main() {
	s := newSummary()
	if err := s.read(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stdout, s.line())
	if s.failed || s.events == 0 {
		os.Exit(1)
	}
}

type summary struct {
	events  int
	passed  int
	failed  bool
	output  map[string][]string // test output, kept until the test ends
	skipped map[int][]string    // reason index (len(reasons) = other) → tests
}

func newSummary() *summary {
	return &summary{output: map[string][]string{}, skipped: map[int][]string{}}
}

// read consumes the JSON stream, printing package lines and failed tests'
// output to w. Lines that are not JSON (build errors) are printed as they are.
func (s *summary) read(r io.Reader, w io.Writer) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintf(w, "%s\n", line)
			continue
		}
		s.events++
		id := e.Package + " " + e.Test
		switch {
		case e.Action == "output" && e.Test == "":
			// Package lines: "ok  pkg 1.2s", "FAIL pkg", "--- FAIL" summaries.
			if !strings.HasPrefix(e.Output, "=== ") && !strings.HasPrefix(e.Output, "PASS") {
				fmt.Fprint(w, e.Output)
			}
		case e.Action == "output":
			s.output[id] = append(s.output[id], e.Output)
		case e.Action == "pass" && e.Test != "":
			s.passed++
			delete(s.output, id)
		case e.Action == "fail":
			s.failed = true
			if e.Test != "" {
				fmt.Fprint(w, strings.Join(s.output[id], ""))
				delete(s.output, id)
			}
		case e.Action == "skip" && e.Test != "":
			s.skipped[classify(s.output[id])] = append(s.skipped[classify(s.output[id])], shortName(e))
			delete(s.output, id)
		}
	}
	return sc.Err()
}

func classify(out []string) int {
	text := strings.ToLower(strings.Join(out, ""))
	for i, r := range reasons {
		if strings.Contains(text, r.match) {
			return i
		}
	}
	return len(reasons)
}

func shortName(e event) string {
	return e.Package[strings.LastIndex(e.Package, "/")+1:] + "." + e.Test
}

// line is the closing summary.
func (s *summary) line() string {
	var n int
	var parts []string
	for i, r := range reasons {
		if tests := s.skipped[i]; len(tests) > 0 {
			n += len(tests)
			parts = append(parts, fmt.Sprintf("%d %s (%s)", len(tests), r.what, r.enable))
		}
	}
	if other := s.skipped[len(reasons)]; len(other) > 0 {
		n += len(other)
		slices.Sort(other)
		parts = append(parts, fmt.Sprintf("%d for other reasons (%s)", len(other), strings.Join(other, ", ")))
	}
	status := "ok"
	if s.failed {
		status = "FAILED"
	}
	if n == 0 {
		return fmt.Sprintf("tests %s: %d passed, none skipped", status, s.passed)
	}
	return fmt.Sprintf("tests %s: %d passed, %d SKIPPED: %s", status, s.passed, n, strings.Join(parts, "; "))
}
