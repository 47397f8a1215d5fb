package graphql

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
)

// DefaultMaxBody is the body limit Judge applies when given none.
const DefaultMaxBody = 1 << 20

// Errors returned by Judge, to be tested with errors.Is. The error's message
// says what is wrong, for the client, and never quotes the document beyond a
// field or fragment name.
var (
	// ErrInvalid: the request is not a GraphQL request this package can
	// judge unambiguously (400).
	ErrInvalid = errors.New("invalid GraphQL request")
	// ErrTooLarge: the body is over the limit (413).
	ErrTooLarge = errors.New("GraphQL request body too large")
	// ErrMutationOverGET: a GET request carries a mutation (405); GET must
	// stay safe for caches and prefetchers.
	ErrMutationOverGET = errors.New("mutation over GET")
	// ErrUnknownField: a root field maps to no area and the endpoint has no
	// default (403, whatever the key's rights: even a key with every area
	// must not reach a field nobody classified).
	ErrUnknownField = errors.New("root field not mapped to an area")
)

// requestError carries one of the sentinels above with a message for the
// client.
type requestError struct {
	kind error
	msg  string
}

func (e *requestError) Error() string { return e.msg }
func (e *requestError) Unwrap() error { return e.kind }

func invalidf(format string, args ...any) error {
	return &requestError{kind: ErrInvalid, msg: fmt.Sprintf(format, args...)}
}

// Need is one area a request uses, and whether it writes to it.
type Need struct {
	Area  string
	Write bool
}

// Judgement is what a request needs: the union over every root field of
// every operation of every document in it.
type Judgement struct {
	// Needs holds one entry per area, sorted by area; Write when any
	// operation writes to it (write covers read).
	Needs []Need
	// Introspection is set when a document selects __schema or __type at
	// the root: it needs read on some area of the endpoint (Areas).
	Introspection bool
}

// Request is a GraphQL request as sent.
type Request struct {
	Method      string
	ContentType string
	RawQuery    string // the URL's query string, still encoded
	Body        io.Reader
	// ContentLength is the declared length of the body, 0 or less if
	// unknown. It only sizes the buffer: the body is read to its end (or
	// the limit) whatever it says.
	ContentLength int64
}

// Judge reads the request's documents and says what they need. It reads at
// most maxBody+1 bytes of the body (maxBody <= 0 means DefaultMaxBody) and
// returns the bytes read, also with an error, so that the caller forwards
// the body byte for byte. A request is refused (the error wraps ErrInvalid,
// ErrTooLarge, ErrMutationOverGET or ErrUnknownField, in that order of
// precedence) or judged as a whole: a batch passes only if every element
// does. Any other error is the body's reader failing.
//
// Documents come from a POST application/json body (a request object or a
// non-empty array of them), a POST application/graphql body (the document
// itself) or the query string of a GET. Content types are matched without
// case and without parameters. query and subscription operations read the
// area of each root field, mutations write it; a root field not in Fields
// goes to Default. __typename needs nothing.
//
// Refused as ambiguous, because a backend could read the request otherwise
// than this judge: a body that is not valid UTF-8; members of a request
// object other than query, operationName, variables and extensions; a
// member name twice in one JSON object, at any depth (parsers keep the
// first or the last); a GraphQL parameter twice in the query string, or a
// raw ";" in it (some servers split parameters on it); query or extensions
// in the URL of a POST; a persisted document id (documentId, doc_id) in the
// URL; a GET with a body; a persisted-query hash that is
// not the SHA-256 of the query sent with it; a document containing U+2028,
// U+2029 or U+0085 (some parsers end a comment there). A hash-only
// persisted query is refused too: the document it stands for cannot be
// judged. A mutation that selects nothing but __typename is refused, so
// that every mutation needs a write.
//
// Judge is safe for concurrent use.
func (e *Endpoint) Judge(req Request, maxBody int64) (j Judgement, body []byte, err error) {
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	body, err = readBody(req.Body, maxBody, req.ContentLength)
	if err != nil {
		return Judgement{}, body, err
	}
	docs, err := documents(req, body)
	if err != nil {
		return Judgement{}, body, err
	}
	sums := make([]*summary, len(docs))
	for i, q := range docs {
		if sums[i], err = e.summarize(q); err != nil {
			if len(docs) > 1 {
				err = fmt.Errorf("batch element %d: %w", i, err)
			}
			return Judgement{}, body, err
		}
	}
	unknown := ""
	for _, s := range sums {
		if s.mutation && req.Method == "GET" {
			return Judgement{}, body, &requestError{kind: ErrMutationOverGET, msg: "a mutation must be sent with POST, not GET"}
		}
		j.Introspection = j.Introspection || s.introspection
		for _, r := range s.roots {
			area, ok := e.Fields[r.name]
			if !ok {
				area = e.Default
			}
			if area == "" {
				if unknown == "" {
					unknown = r.name
				}
				continue
			}
			j.Needs = addNeed(j.Needs, area, r.write)
		}
	}
	if unknown != "" {
		return Judgement{}, body, &requestError{kind: ErrUnknownField, msg: fmt.Sprintf("root field %s is not mapped to an area of this endpoint", shortQuote(unknown))}
	}
	slices.SortFunc(j.Needs, func(a, b Need) int { return cmp.Compare(a.Area, b.Area) })
	return j, body, nil
}

// addNeed adds one need, one entry per area. An endpoint has few areas, so
// a linear search is cheapest.
func addNeed(needs []Need, area string, write bool) []Need {
	for i := range needs {
		if needs[i].Area == area {
			needs[i].Write = needs[i].Write || write
			return needs
		}
	}
	if needs == nil {
		needs = make([]Need, 0, 4)
	}
	return append(needs, Need{Area: area, Write: write})
}

func readBody(r io.Reader, max, hint int64) ([]byte, error) {
	if r == nil {
		return nil, nil
	}
	limit := max
	if limit < math.MaxInt64 {
		limit++ // one byte more tells "exactly max" from "over max"
	}
	var buf bytes.Buffer
	if hint > 0 && hint <= max {
		buf.Grow(int(hint) + bytes.MinRead) // room to read EOF without growing
	}
	_, err := buf.ReadFrom(&io.LimitedReader{R: r, N: limit})
	body := buf.Bytes()
	if err != nil {
		return body, fmt.Errorf("reading the GraphQL request body: %w", err)
	}
	if int64(len(body)) > max {
		return body, &requestError{kind: ErrTooLarge, msg: fmt.Sprintf("the request body is larger than %d bytes", max)}
	}
	return body, nil
}

// shortQuote quotes a name for a message, cut short: names come from the
// client and may be long.
func shortQuote(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q…", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
