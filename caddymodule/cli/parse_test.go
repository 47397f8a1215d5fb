package cli

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseRate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    *rateLimit
		wantErr string
	}{
		{name: "per minute", in: "100/1m", want: &rateLimit{Limit: 100, Per: "1m"}},
		{name: "per second", in: "5/1s", want: &rateLimit{Limit: 5, Per: "1s"}},
		{name: "compound duration", in: "1000/1h30m", want: &rateLimit{Limit: 1000, Per: "1h30m"}},
		{name: "bare unit", in: "10/s", want: &rateLimit{Limit: 10, Per: "1s"}},
		{name: "spaces", in: " 100 / 1m ", want: &rateLimit{Limit: 100, Per: "1m"}},
		{name: "no slash", in: "100", wantErr: "want <requests>/<duration>"},
		{name: "empty", in: "", wantErr: "want <requests>/<duration>"},
		{name: "zero", in: "0/1m", wantErr: "positive whole number"},
		{name: "negative", in: "-5/1m", wantErr: "positive whole number"},
		{name: "fraction", in: "1.5/1m", wantErr: "positive whole number"},
		{name: "not a number", in: "many/1m", wantErr: "positive whole number"},
		{name: "bad duration", in: "100/minute", wantErr: "duration such as"},
		{name: "days are not a unit", in: "100/1d", wantErr: "duration such as"},
		{name: "no duration", in: "100/", wantErr: "duration such as"},
		{name: "zero duration", in: "100/0s", wantErr: "positive"},
		{name: "negative duration", in: "100/-1m", wantErr: "positive"},
		{name: "two slashes", in: "100/1m/2", wantErr: "duration such as"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseRate(tt.in)
			checkParse(t, got, err, tt.want, tt.wantErr)
			if err != nil && !strings.Contains(err.Error(), "--rate") {
				t.Errorf("error %q does not name the flag", err)
			}
		})
	}
}

func TestParseQuota(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    *quotaLimit
		wantErr string
	}{
		{name: "month", in: "10000/month", want: &quotaLimit{Limit: 10000, Period: "month"}},
		{name: "day", in: "500/day", want: &quotaLimit{Limit: 500, Period: "day"}},
		{name: "upper case", in: "500/DAY", want: &quotaLimit{Limit: 500, Period: "day"}},
		{name: "no slash", in: "10000", wantErr: "want <requests>/day"},
		{name: "zero", in: "0/month", wantErr: "positive whole number"},
		{name: "negative", in: "-1/month", wantErr: "positive whole number"},
		{name: "week", in: "100/week", wantErr: "day or month"},
		{name: "duration", in: "100/24h", wantErr: "day or month"},
		{name: "plural", in: "100/months", wantErr: "day or month"},
		{name: "empty period", in: "100/", wantErr: "day or month"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseQuota(tt.in)
			checkParse(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func TestParseRights(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr string
	}{
		{name: "two", in: "assets:read,workorders:write", want: []string{"assets:read", "workorders:write"}},
		{name: "spaces around", in: " assets:read , *:read ", want: []string{"assets:read", "*:read"}},
		{name: "admin", in: "keys:admin", want: []string{"keys:admin"}},
		{name: "empty", in: "", wantErr: "--rights is required"},
		{name: "no level", in: "assets", wantErr: `invalid right "assets"`},
		{name: "empty level", in: "assets:", wantErr: `invalid right "assets:"`},
		{name: "empty area", in: ":read", wantErr: `invalid right ":read"`},
		{name: "trailing comma", in: "assets:read,", wantErr: `invalid right ""`},
		{name: "inner space", in: "assets :read", wantErr: "invalid right"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseRights(tt.in)
			checkParse(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func TestParseSHA256(t *testing.T) {
	t.Parallel()
	hexDigest := strings.Repeat("ab", 32)
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr bool
	}{
		{name: "lower", in: hexDigest, want: hexDigest},
		{name: "upper is normalised", in: strings.ToUpper(hexDigest), want: hexDigest},
		{name: "too short", in: hexDigest[:62], wantErr: true},
		{name: "too long", in: hexDigest + "00", wantErr: true},
		{name: "not hex", in: strings.Repeat("zz", 32), wantErr: true},
		{name: "empty", in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseSHA256(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error: got %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReadSecret(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		file    string
		stdin   string
		want    string
		wantErr string
	}{
		{name: "file with newline", file: write("k1", "legacy-key-value\n"), want: "legacy-key-value"},
		{name: "stdin", file: "-", stdin: "  from-stdin\r\n", want: "from-stdin"},
		{name: "empty file", file: write("k2", "\n"), wantErr: "no key found"},
		{name: "empty stdin", file: "-", wantErr: "no key found in stdin"},
		{name: "two lines", file: write("k3", "one\ntwo\n"), wantErr: "more than one line"},
		{name: "missing file", file: filepath.Join(dir, "nope"), wantErr: "no such file"},
		{name: "huge", file: write("k4", strings.Repeat("x", maxSecretBytes+1)), wantErr: "is that really a key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := readSecret(tt.file, strings.NewReader(tt.stdin))
			checkParse(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func TestClean(t *testing.T) {
	t.Parallel()
	if got, want := clean("a\tb\nc\x1b[31md"), "a?b?c?[31md"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// checkParse compares a parse result with the wanted value, or the error
// with the wanted substring.
func checkParse[T any](t *testing.T, got T, err error, want T, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil {
			t.Fatalf("got %v, want error containing %q", got, wantErr)
		}
		if !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("got error %q, want it to contain %q", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("got error %v, want %v", err, want)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v, want %#v", got, want)
	}
}
