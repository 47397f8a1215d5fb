package graphql

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/url"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// documents returns the query of every document in the request.
func documents(req Request, body []byte) ([]string, error) {
	params, err := parseQueryString(req.RawQuery)
	if err != nil {
		return nil, err
	}
	switch req.Method {
	case "GET":
		if len(body) > 0 {
			return nil, invalidf("a GET request must not have a body")
		}
		q, err := params.document()
		if err != nil {
			return nil, err
		}
		return []string{q}, nil
	case "POST":
		if params.set[paramQuery] || params.set[paramExtensions] {
			return nil, invalidf("a POST request must carry its query in the body only, not also in the URL")
		}
		if !utf8.Valid(body) {
			return nil, invalidf("the body is not valid UTF-8")
		}
		switch mediaType(req.ContentType) {
		case "application/json":
			return jsonDocuments(body)
		case "application/graphql":
			return []string{string(body)}, nil
		default:
			return nil, invalidf("a POST request must have Content-Type application/json or application/graphql")
		}
	default:
		return nil, invalidf("a GraphQL request must use GET or POST")
	}
}

// mediaType is the content type without parameters, in lower case.
func mediaType(ct string) string {
	ct, _, _ = strings.Cut(ct, ";")
	return strings.ToLower(strings.TrimSpace(ct))
}

// The GraphQL parameters of a GET request, indexes in queryParams; also the
// members of a JSON request object.
const (
	paramQuery = iota
	paramOperationName
	paramVariables
	paramExtensions
)

var paramNames = [...]string{"query", "operationName", "variables", "extensions"}

type queryParams struct {
	val [len(paramNames)]string
	set [len(paramNames)]bool
}

// parseQueryString reads the GraphQL parameters of a raw query string.
// Parameters are separated by "&" only, as in Go's net/url and servlet
// containers; a raw ";" is refused rather than guessed at. A persisted
// document id (documentId, doc_id) is refused: a server could run the
// document it names instead of the query. Other parameters (the key
// itself, for instance) are ignored.
func parseQueryString(raw string) (queryParams, error) {
	var p queryParams
	if strings.IndexByte(raw, ';') >= 0 {
		return p, invalidf("the query string contains a raw ';', which servers read differently; encode it as %%3B")
	}
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(kv, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return p, invalidf("the query string is not properly encoded")
		}
		if key == "documentId" || key == "doc_id" {
			return p, invalidf("persisted documents by id are not accepted: send the query")
		}
		i := paramIndex(key)
		if i < 0 {
			continue
		}
		if p.set[i] {
			return p, invalidf("the query string has %s twice", paramNames[i])
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return p, invalidf("the query string is not properly encoded")
		}
		if !utf8.ValidString(val) {
			return p, invalidf("the %s parameter is not valid UTF-8", paramNames[i])
		}
		p.val[i], p.set[i] = val, true
	}
	return p, nil
}

func paramIndex(key string) int {
	for i, n := range paramNames {
		if n == key {
			return i
		}
	}
	return -1
}

// document checks the GraphQL parameters of a GET and returns its query.
func (p *queryParams) document() (string, error) {
	if p.set[paramVariables] {
		v := jsontext.Value(strings.TrimSpace(p.val[paramVariables]))
		if k := v.Kind(); (k != '{' && k != 'n') || !v.IsValid() {
			return "", invalidf("the variables parameter must be a JSON object")
		}
	}
	var pq persisted
	if p.set[paramExtensions] {
		dec := newDecoder([]byte(p.val[paramExtensions]))
		defer dec.release()
		var err error
		switch dec.PeekKind() {
		case '{':
			pq, err = readExtensions(dec)
		case 'n':
			err = dec.SkipValue()
		default:
			return "", invalidf("the extensions parameter must be a JSON object")
		}
		if err == nil {
			err = checkEOF(dec)
		}
		if err != nil {
			return "", err
		}
	}
	return checkQuery(p.val[paramQuery], p.set[paramQuery], pq)
}

// decoder reads JSON from a byte slice without copying it. By default
// jsontext refuses a member name twice in one object, at any depth, and
// invalid UTF-8: exactly what could make a backend see another request
// than the judge. Decoders are pooled: their state for telling duplicate
// names is most of what judging a cached document allocates.
type decoder struct {
	jsontext.Decoder
	buf     bytes.Buffer
	scratch []byte // for unquoting the query
}

var decoders = sync.Pool{New: func() any { return new(decoder) }}

func newDecoder(b []byte) *decoder {
	d := decoders.Get().(*decoder)
	d.buf = *bytes.NewBuffer(b)
	d.Reset(&d.buf)
	return d
}

// release returns d to the pool, keeping no reference to the body.
func (d *decoder) release() {
	d.buf = bytes.Buffer{}
	if cap(d.scratch) > 64<<10 {
		d.scratch = nil // a rare large document should not stay in the pool
	}
	d.Reset(&d.buf)
	decoders.Put(d)
}

// jsonDocuments reads a request object or a batch of them.
func jsonDocuments(body []byte) ([]string, error) {
	dec := newDecoder(body)
	defer dec.release()
	var docs []string
	switch dec.PeekKind() {
	case '{':
		q, err := readRequest(dec)
		if err != nil {
			return nil, err
		}
		docs = []string{q}
	case '[':
		if _, err := dec.ReadToken(); err != nil {
			return nil, jsonError(err)
		}
		for i := 0; dec.PeekKind() != ']'; i++ {
			q, err := readRequest(dec)
			if err != nil {
				return nil, invalidf("batch element %d: %v", i, err)
			}
			docs = append(docs, q)
		}
		if _, err := dec.ReadToken(); err != nil {
			return nil, jsonError(err)
		}
		if len(docs) == 0 {
			return nil, invalidf("the batch is empty")
		}
	case 0:
		if _, err := dec.ReadToken(); errors.Is(err, io.EOF) {
			return nil, invalidf("the body is empty")
		} else {
			return nil, jsonError(err)
		}
	default:
		return nil, invalidf("the body must be a JSON object, or an array of them")
	}
	if err := checkEOF(dec); err != nil {
		return nil, err
	}
	return docs, nil
}

// readRequest reads {"query","operationName","variables","extensions"}.
// Any other member is refused: a backend could take "id", "documentId" or
// a differently cased "Query" for the document.
func readRequest(dec *decoder) (string, error) {
	if tok, err := dec.ReadToken(); err != nil {
		return "", jsonError(err)
	} else if tok.Kind() != '{' {
		return "", invalidf("a GraphQL request must be a JSON object")
	}
	var (
		query    string
		hasQuery bool
		pq       persisted
	)
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return "", jsonError(err)
		}
		// The token is only valid until the next call on dec.
		member := paramIndex(name.String())
		if member < 0 {
			return "", invalidf("a GraphQL request has only query, operationName, variables and extensions, not %s", shortQuote(name.String()))
		}
		kind := dec.PeekKind()
		switch member {
		case paramQuery:
			switch kind {
			case '"':
				v, err := dec.ReadValue()
				if err == nil {
					dec.scratch, err = jsontext.AppendUnquote(dec.scratch[:0], v)
				}
				if err != nil {
					return "", jsonError(err)
				}
				query, hasQuery = string(dec.scratch), true
				continue
			case 'n':
			default:
				return "", invalidf("query must be a string")
			}
		case paramOperationName:
			if kind != '"' && kind != 'n' {
				return "", invalidf("operationName must be a string")
			}
		case paramVariables:
			if kind != '{' && kind != 'n' {
				return "", invalidf("variables must be a JSON object")
			}
		case paramExtensions:
			if kind == '{' {
				if pq, err = readExtensions(dec); err != nil {
					return "", err
				}
				continue
			}
			if kind != 'n' {
				return "", invalidf("extensions must be a JSON object")
			}
		}
		if err := dec.SkipValue(); err != nil {
			return "", jsonError(err)
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return "", jsonError(err)
	}
	return checkQuery(query, hasQuery, pq)
}

// persisted is what extensions.persistedQuery says.
type persisted struct {
	present bool
	hasHash bool
	hash    string // sha256Hash
}

// readExtensions reads the extensions object, of which only persistedQuery
// matters.
func readExtensions(dec *decoder) (persisted, error) {
	var pq persisted
	if _, err := dec.ReadToken(); err != nil { // {
		return pq, jsonError(err)
	}
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return pq, jsonError(err)
		}
		if name.String() != "persistedQuery" {
			if err := dec.SkipValue(); err != nil {
				return pq, jsonError(err)
			}
			continue
		}
		if dec.PeekKind() != '{' {
			return pq, invalidf("extensions.persistedQuery must be a JSON object")
		}
		pq.present = true
		if _, err := dec.ReadToken(); err != nil {
			return pq, jsonError(err)
		}
		for dec.PeekKind() != '}' {
			name, err := dec.ReadToken()
			if err != nil {
				return pq, jsonError(err)
			}
			if name.String() != "sha256Hash" {
				if err := dec.SkipValue(); err != nil {
					return pq, jsonError(err)
				}
				continue
			}
			if dec.PeekKind() != '"' {
				return pq, invalidf("extensions.persistedQuery.sha256Hash must be a string")
			}
			tok, err := dec.ReadToken()
			if err != nil {
				return pq, jsonError(err)
			}
			pq.hash, pq.hasHash = tok.String(), true
		}
		if _, err := dec.ReadToken(); err != nil {
			return pq, jsonError(err)
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return pq, jsonError(err)
	}
	return pq, nil
}

// checkQuery refuses a missing query and a persisted query whose hash is
// not the query's: a server that prefers its cached document to the one
// sent would run something else than what was judged.
func checkQuery(q string, present bool, pq persisted) (string, error) {
	if !present {
		if pq.present {
			return "", invalidf("persisted queries by hash alone are not accepted: send the query with its hash")
		}
		return "", invalidf("the request has no query")
	}
	if pq.hasHash {
		sum := sha256.Sum256([]byte(q))
		if !strings.EqualFold(pq.hash, hex.EncodeToString(sum[:])) {
			return "", invalidf("extensions.persistedQuery.sha256Hash is not the SHA-256 of the query")
		}
	}
	return q, nil
}

// checkEOF refuses anything after the JSON value.
func checkEOF(dec *decoder) error {
	if _, err := dec.ReadToken(); !errors.Is(err, io.EOF) {
		if err != nil {
			return jsonError(err)
		}
		return invalidf("the JSON value is followed by more data")
	}
	return nil
}

// jsonError says what is wrong with the JSON without quoting it.
func jsonError(err error) error {
	var serr *jsontext.SyntacticError
	switch {
	case errors.As(err, &serr) && errors.Is(err, jsontext.ErrDuplicateName):
		return invalidf("the JSON has a member twice in one object (%s)", shortQuote(string(serr.JSONPointer)))
	case errors.As(err, &serr):
		return invalidf("the JSON is not valid (after byte %d)", serr.ByteOffset)
	}
	return invalidf("the JSON is not valid")
}
