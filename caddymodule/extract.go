package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
)

// KeySources says where a handler looks for the API key.
type KeySources struct {
	// Headers are the request headers that may carry the key
	// (case-insensitive). Default: ["apikey"].
	Headers []string `json:"headers,omitempty"`
	// Query are the query parameters that may carry the key (exact
	// names). Default: ["apikey"], unless DisableQuery is set.
	Query []string `json:"query,omitempty"`
	// DisableQuery stops reading keys from the query string.
	DisableQuery bool `json:"disable_query,omitempty"`
	// Bearer also reads the key from "Authorization: Bearer <key>".
	Bearer bool `json:"bearer,omitempty"`
}

func (ks KeySources) extractor() extractor {
	headers, query := ks.Headers, ks.Query
	if len(headers) == 0 {
		headers = []string{"apikey"}
	}
	if len(query) == 0 {
		query = []string{"apikey"}
	}
	if ks.DisableQuery {
		query = nil
	}
	x := extractor{query: query, bearer: ks.Bearer}
	for _, name := range headers {
		x.headers = append(x.headers, textproto.CanonicalMIMEHeaderKey(name))
	}
	return x
}

func (ks KeySources) validate() error {
	for _, n := range ks.Headers {
		if n == "" || strings.ContainsAny(n, " :\t") {
			return fmt.Errorf("apikey: invalid header name %q", n)
		}
	}
	for _, n := range ks.Query {
		if n == "" {
			return errors.New("apikey: empty query parameter name")
		}
	}
	return nil
}

// extractor finds the API key of a request in the configured places
// (docs/design.md §1 step 1) and removes it again before the request is forwarded.
type extractor struct {
	headers []string // canonical header names
	query   []string // exact query parameter names; empty: query disabled
	bearer  bool
}

// extraction is what extract found.
type extraction struct {
	key       string
	found     bool
	ambiguous bool // more than one distinct value
	inQuery   bool
	inBearer  bool
	// overrides are X-HTTP-Method-Override, X-Method-Override,
	// X-HTTP-Method (.NET/IIS) and _method values, judged in place of the
	// request method.
	overrides []string
}

// extract collects every candidate key. Header names are matched
// case-insensitively (Go canonicalises them), query names exactly after
// decoding, so "%61pikey" is the same parameter as "apikey" both here and
// at the backend. Only '&' separates query parameters: ';' is data
// (Maximo's oslc.where may hold description="a;b").
func (x *extractor) extract(r *http.Request, ex *extraction) {
	for _, name := range x.headers {
		for _, v := range r.Header[name] {
			ex.add(v)
		}
	}
	if x.bearer {
		for _, v := range r.Header["Authorization"] {
			if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
				ex.add(strings.TrimSpace(v[7:]))
				ex.inBearer = true
			}
		}
	}
	if r.URL.RawQuery != "" {
		forEachSegment(r.URL.RawQuery, func(seg string) {
			// Decode the name only; the value only of a parameter we use.
			name, value, _ := strings.Cut(seg, "=")
			name = decodeComponent(name)
			switch {
			case name == "_method":
				ex.overrides = append(ex.overrides, decodeComponent(value))
			case x.isQueryName(name):
				ex.add(decodeComponent(value))
				ex.inQuery = true
			}
		})
	}
	for _, h := range [...]string{"X-Http-Method-Override", "X-Method-Override", "X-Http-Method"} {
		ex.overrides = append(ex.overrides, r.Header[h]...)
	}
}

func (ex *extraction) add(v string) {
	if !ex.found {
		ex.key, ex.found = v, true
		return
	}
	if v != ex.key {
		ex.ambiguous = true
	}
}

// scrub removes the key from headers, query string and Authorization.
func (x *extractor) scrub(r *http.Request, ex *extraction) {
	for _, name := range x.headers {
		delete(r.Header, name)
	}
	if ex.inBearer {
		r.Header.Del("Authorization")
	}
	if ex.inQuery {
		// Everything but the key's parameters is forwarded byte for byte.
		raw := r.URL.RawQuery
		var b strings.Builder
		b.Grow(len(raw))
		first := true
		for seg := range strings.SplitSeq(raw, "&") {
			name, _, _ := strings.Cut(seg, "=")
			if seg != "" && x.isQueryName(decodeComponent(name)) {
				continue
			}
			if !first {
				b.WriteByte('&')
			}
			first = false
			b.WriteString(seg)
		}
		r.URL.RawQuery = b.String()
		r.URL.ForceQuery = false
		r.RequestURI = r.URL.RequestURI()
	}
}

func (x *extractor) isQueryName(name string) bool {
	for _, q := range x.query {
		if name == q {
			return true
		}
	}
	return false
}

// forEachSegment calls fn for each non-empty '&'-separated segment.
func forEachSegment(raw string, fn func(seg string)) {
	for raw != "" {
		i := strings.IndexByte(raw, '&')
		seg := raw
		if i >= 0 {
			seg, raw = raw[:i], raw[i+1:]
		} else {
			raw = ""
		}
		if seg != "" {
			fn(seg)
		}
	}
}

// decodeComponent query-unescapes s; an undecodable value is kept as it is
// (it will fail the key checks, never pass them).
func decodeComponent(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	d, err := url.QueryUnescape(s)
	if err != nil {
		return s
	}
	return d
}
