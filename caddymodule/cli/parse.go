package cli

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keystore"
)

// The rate and quota objects of docs/design.md §2, as the admin API sends them.
type (
	rateLimit  = admin.Rate
	quotaLimit = admin.Quota
)

// parseRate parses --rate: "<requests>/<Go duration>", e.g. "100/1m", with
// keystore.ParseRateText. Spaces are trimmed and a bare unit ("100/s") means
// one of it.
func parseRate(s string) (*rateLimit, error) {
	text, per := strings.TrimSpace(s), ""
	if n, p, ok := strings.Cut(text, "/"); ok {
		n, per = strings.TrimSpace(n), strings.TrimSpace(p)
		if _, err := time.ParseDuration(per); err != nil && per != "" && !unicode.IsDigit(rune(per[0])) {
			per = "1" + per // a bare unit: 100/s
		}
		text = n + "/" + per
	}
	r, err := keystore.ParseRateText(text)
	if err != nil {
		return nil, fmt.Errorf("invalid --rate %q: %v", s, err)
	}
	return &rateLimit{Limit: r.Limit, Per: per}, nil
}

// parseQuota parses --quota: "<requests>/day" or "<requests>/month", in any
// case.
func parseQuota(s string) (*quotaLimit, error) {
	text := strings.TrimSpace(s)
	if n, p, ok := strings.Cut(text, "/"); ok {
		text = strings.TrimSpace(n) + "/" + strings.ToLower(strings.TrimSpace(p))
	}
	q, err := keystore.ParseQuotaText(text)
	if err != nil {
		return nil, fmt.Errorf("invalid --quota %q: %v", s, err)
	}
	return &quotaLimit{Limit: q.Limit, Period: q.Period}, nil
}

// parseRights splits --rights "assets:read,workorders:write". Whether an
// area exists is the server's call; this only catches typos of shape.
func parseRights(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("--rights is required, e.g. --rights assets:read,workorders:write")
	}
	var rights []string
	for r := range strings.SplitSeq(s, ",") {
		r = strings.TrimSpace(r)
		area, level, ok := strings.Cut(r, ":")
		if !ok || area == "" || level == "" || strings.ContainsAny(r, " \t") {
			return nil, fmt.Errorf("invalid right %q in --rights: want area:read or area:write (or keys:admin, keys:self)", r)
		}
		rights = append(rights, r)
	}
	return rights, nil
}

// parseDuration checks a duration flag the server will receive as a string.
func parseDuration(flag, s string) (string, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return "", fmt.Errorf("invalid %s %q: want a duration such as 24h or 720h (days are not a unit: 30 days = 720h)", flag, s)
	}
	if d <= 0 {
		return "", fmt.Errorf("invalid %s %q: must be positive", flag, s)
	}
	return strings.TrimSpace(s), nil
}

// parseDate checks a YYYY-MM-DD flag.
func parseDate(flag, s string) (time.Time, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid %s %q: want YYYY-MM-DD", flag, s)
	}
	return t, nil
}

// parseSHA256 checks an imported key digest: 64 hex digits.
func parseSHA256(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if b, err := hex.DecodeString(s); err != nil || len(b) != 32 {
		return "", fmt.Errorf("invalid --sha256: want the 64 hex digits of a SHA-256 digest")
	}
	return s, nil
}

// maxSecretBytes bounds what --apikey-file reads.
const maxSecretBytes = 64 << 10

// readSecret reads a key from a file, or from stdin when name is "-", and
// trims surrounding whitespace (a trailing newline above all).
func readSecret(name string, stdin io.Reader) (string, error) {
	var r io.Reader
	if name == "-" {
		r = stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return "", fmt.Errorf("--apikey-file: %v", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxSecretBytes+1))
	if err != nil {
		return "", fmt.Errorf("--apikey-file: %v", err)
	}
	if len(b) > maxSecretBytes {
		return "", fmt.Errorf("--apikey-file: more than %d bytes; is that really a key?", maxSecretBytes)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("--apikey-file: no key found in %s", displayName(name))
	}
	if strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("--apikey-file: %s holds more than one line; put exactly one key in it", displayName(name))
	}
	return s, nil
}

func displayName(name string) string {
	if name == "-" {
		return "stdin"
	}
	return name
}

// clean makes server-supplied text safe to print on a terminal and in a
// table cell: control characters (escape sequences, tabs, newlines)
// become '?'.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}
