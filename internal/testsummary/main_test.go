package main

import (
	"bytes"
	"strings"
	"testing"
)

const stream = `{"Action":"run","Package":"k/keystore","Test":"TestA"}
{"Action":"output","Package":"k/keystore","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"pass","Package":"k/keystore","Test":"TestA"}
{"Action":"run","Package":"k/keystore","Test":"TestPG"}
{"Action":"output","Package":"k/keystore","Test":"TestPG","Output":"    pg_test.go:25: KEYGATE_TEST_DATABASE_URL is not set; example: postgres://…\n"}
{"Action":"skip","Package":"k/keystore","Test":"TestPG"}
{"Action":"output","Package":"k/keystore","Output":"ok  \tk/keystore\t0.1s\n"}
{"Action":"run","Package":"k/e2e","Test":"TestBrowser"}
{"Action":"output","Package":"k/e2e","Test":"TestBrowser","Output":"    browser_test.go:55: browser tests need Chromium at /usr/bin/chromium\n"}
{"Action":"skip","Package":"k/e2e","Test":"TestBrowser"}
{"Action":"run","Package":"k/e2e","Test":"TestMidnight"}
{"Action":"output","Package":"k/e2e","Test":"TestMidnight","Output":"    x_test.go:1: too close to UTC midnight\n"}
{"Action":"skip","Package":"k/e2e","Test":"TestMidnight"}
`

func TestSummaryNamesSkipsAndHowToEnable(t *testing.T) {
	s := newSummary()
	var out bytes.Buffer
	if err := s.read(strings.NewReader(stream), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "ok  \tk/keystore") {
		t.Fatalf("package line not printed: %q", out.String())
	}
	line := s.line()
	for _, want := range []string{"tests ok: 1 passed, 3 SKIPPED", "1 need PostgreSQL (set KEYGATE_TEST_DATABASE_URL=", "1 need Chromium", "1 for other reasons (e2e.TestMidnight)"} {
		if !strings.Contains(line, want) {
			t.Errorf("got %q, want it to contain %q", line, want)
		}
	}
	if s.failed {
		t.Error("no test failed, but the summary says so")
	}
}

func TestSummaryPrintsFailedOutput(t *testing.T) {
	s := newSummary()
	var out bytes.Buffer
	in := `{"Action":"output","Package":"k/a","Test":"TestF","Output":"    a_test.go:9: got 1, want 2\n"}
{"Action":"fail","Package":"k/a","Test":"TestF"}
{"Action":"output","Package":"k/a","Output":"FAIL\tk/a\t0.1s\n"}
{"Action":"fail","Package":"k/a"}
`
	if err := s.read(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	if !s.failed || !strings.Contains(out.String(), "got 1, want 2") || !strings.Contains(s.line(), "tests FAILED: 0 passed, none skipped") {
		t.Fatalf("failed=%v out=%q line=%q", s.failed, out.String(), s.line())
	}
}
