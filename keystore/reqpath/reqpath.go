// Package reqpath reads a request path the way the backends behind keygate
// will (docs/design.md §1 step 0, docs/paths.md).
//
// Go, servlet containers and IIS disagree about some paths: a servlet
// container drops ";params" from each segment before it resolves "..", so
// "/mxasset/..;/mxwo" is "/mxwo" to it; IIS reads "\" and "%5C" as "/";
// some backends decode twice. Judging one reading and forwarding a path the
// backend reads differently is an area escape. Canonical therefore refuses
// every path whose readings could differ and returns the one canonical path
// that is both judged and forwarded.
package reqpath

import (
	"errors"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Options weaken the check, knowingly, for backends that need the
// characters in their paths. Both default to off.
type Options struct {
	// AllowSemicolon lets ";" and "%3B" through. A servlet container then
	// strips ";params" from segments: a segment that is "." or ".." before
	// its first ";" is still refused, but the backend reads a different
	// path than the one judged whenever a segment carries parameters.
	AllowSemicolon bool
	// AllowEncodedSlash lets "%2F" through; dot segments are still
	// refused in the decoded path.
	AllowEncodedSlash bool
}

// The reasons a path is refused. Every one is ErrInvalid as well.
var (
	ErrInvalid        = errors.New("the request path is read differently by keygate and common backends")
	errNotAbsolute    = reason("the request path must start with /")
	errSemicolon      = reason(`the request path contains ";" or "%3B" (servlet containers drop ;parameters from segments)`)
	errBackslash      = reason(`the request path contains "\" or "%5C" (IIS reads it as /)`)
	errEncodedSlash   = reason(`the request path contains "%2F"`)
	errEncodedPercent = reason(`the request path contains "%25" (a backend that decodes twice reads another path)`)
	errControl        = reason("the request path contains a NUL or control byte")
	errDotSegment     = reason(`the request path contains a "." or ".." segment`)
	errUTF8           = reason("the request path is not valid UTF-8 once decoded")
	errLookalike      = reason(`the request path contains a character some servers map to ".", "/" or "\"`)
)

type pathError struct{ msg string }

func (e *pathError) Error() string        { return e.msg }
func (e *pathError) Is(target error) bool { return target == ErrInvalid }

func reason(msg string) error { return &pathError{msg} }

// Canonical checks a request path given both as sent (escaped, e.g. Go's
// URL.EscapedPath) and decoded (URL.Path; the decoding of escaped), and
// returns the canonical path in both forms: empty segments merged,
// everything else as the client sent it. It refuses (an error that Is
// ErrInvalid, saying why) any path that contains ";" or "%3B", "\" or
// "%5C", "%2F", "%25", a NUL or control byte, a "." or ".." segment in any
// spelling, invalid UTF-8 once decoded, or a Unicode lookalike of ".", "/"
// or "\" that some servers map to it.
//
// A path that needs no change is returned as given, without allocating.
func Canonical(escaped, decoded string, opts Options) (canonEscaped, canonDecoded string, err error) {
	if escaped == "" || escaped[0] != '/' {
		return "", "", errNotAbsolute
	}
	if strings.IndexByte(escaped, '%') >= 0 {
		if err := checkEscapes(escaped, opts); err != nil {
			return "", "", err
		}
	}
	if err := checkDecoded(decoded, opts); err != nil {
		return "", "", err
	}
	if strings.Contains(escaped, "//") {
		// Rare: build the merged forms. Merging cannot create a sequence
		// refused above, so they need no second check.
		escaped = mergeSlashes(escaped)
		d, err := url.PathUnescape(escaped)
		if err != nil {
			return "", "", errUTF8
		}
		decoded = d
	}
	return escaped, decoded, nil
}

// checkEscapes refuses the escapes that decoding would turn into a
// separator or a new escape.
func checkEscapes(escaped string, opts Options) error {
	for i := 0; i < len(escaped); i++ {
		if escaped[i] != '%' {
			continue
		}
		if i+2 >= len(escaped) {
			return errUTF8 // a truncated escape never decodes
		}
		switch hexPair(escaped[i+1], escaped[i+2]) {
		case '/':
			if !opts.AllowEncodedSlash {
				return errEncodedSlash
			}
		case '%':
			return errEncodedPercent
		}
		i += 2
	}
	return nil
}

// checkDecoded refuses bytes, runes and segments of the decoded path that
// backends read differently.
func checkDecoded(p string, opts Options) error {
	ascii := true
	segStart := 0
	for i := 0; i <= len(p); i++ {
		if i < len(p) && !special[p[i]] {
			continue
		}
		if i == len(p) || p[i] == '/' {
			if isDotSegment(p[segStart:i], opts.AllowSemicolon) {
				return errDotSegment
			}
			segStart = i + 1
			continue
		}
		switch c := p[i]; {
		case c < 0x20 || c == 0x7f:
			return errControl
		case c == '\\':
			return errBackslash
		case c == ';':
			if !opts.AllowSemicolon {
				return errSemicolon
			}
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	if ascii {
		return nil
	}
	if !utf8.ValidString(p) { // overlong forms such as %C0%AE included
		return errUTF8
	}
	for _, r := range p {
		if isLookalike(r) {
			return errLookalike
		}
	}
	return nil
}

// special marks the bytes checkDecoded looks at; the others are skipped
// with one table load.
var special = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c < 0x20 || c >= 0x7f || c == '/' || c == '\\' || c == ';'
	}
	return t
}()

// isDotSegment reports whether a decoded segment is "." or "..", also once
// a servlet container has dropped its ";params" or Windows its trailing
// spaces.
func isDotSegment(seg string, semicolonsAllowed bool) bool {
	if semicolonsAllowed {
		if i := strings.IndexByte(seg, ';'); i >= 0 {
			seg = seg[:i]
		}
	}
	if seg == "" || seg[0] != '.' {
		return false
	}
	// Windows drops trailing spaces from path components: ".. " is "..".
	seg = strings.TrimRight(seg, " ")
	return seg == "." || seg == ".."
}

// isLookalike reports runes that Windows "best fit" mappings, Unicode
// normalisation (NFKC) or lenient decoders turn into ".", "/" or "\".
func isLookalike(r rune) bool {
	switch r {
	case '\uFF0E', '\uFE52', '\u2024', // fullwidth, small and one-dot-leader full stops
		'\uFF0F', '\u2215', '\u2044', '\u29F8', // fullwidth solidus, division and fraction slashes, big solidus
		'\uFF3C', '\uFE68', '\u29F5', '\u29F9', // fullwidth and small reverse solidus, set minus, big reverse solidus
		'\u2025', '\u2026': // two-dot leader, ellipsis: NFKC ".." and "..."
		return true
	}
	return false
}

// mergeSlashes collapses runs of "/" into one.
func mergeSlashes(p string) string {
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// hexPair decodes two hex digits; a byte that is not valid hex gives 0,
// which matches neither '/' nor '%' (Go's URL parser refuses such escapes).
func hexPair(a, b byte) byte {
	return unhex(a)<<4 | unhex(b)
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10
	}
	return 0
}
