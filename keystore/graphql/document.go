package graphql

import (
	"errors"
	"strings"
	"sync"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"
)

// maxFragmentDepth bounds fragments within fragments at the root of an
// operation. The parser already bounds the nesting of selection sets, but
// not a chain of named fragments spreading one another.
const maxFragmentDepth = 64

// summary is what one document selects at the roots of its operations. It
// depends on the document only, not on the endpoint's mapping, so it can be
// cached by document.
type summary struct {
	roots         []rootField
	introspection bool
	mutation      bool
}

type rootField struct {
	name  string
	write bool // selected by a mutation
}

// summarize parses a document, or finds it in the endpoint's cache:
// clients send the same few documents over and over, with other variables,
// and parsing is most of the cost of judging.
func (e *Endpoint) summarize(query string) (*summary, error) {
	if s := e.cache.get(query); s != nil {
		return s, nil
	}
	if strings.TrimSpace(query) == "" {
		return nil, invalidf("the query is empty")
	}
	if strings.Contains(query, "\u2028") || strings.Contains(query, "\u2029") || strings.Contains(query, "\u0085") {
		return nil, invalidf("the query contains U+2028, U+2029 or U+0085, which GraphQL parsers disagree on; escape them in strings")
	}
	doc, err := parser.ParseQuery(&ast.Source{Input: query})
	if err != nil {
		var gerr *gqlerror.Error
		if errors.As(err, &gerr) && len(gerr.Locations) > 0 {
			loc := gerr.Locations[0]
			return nil, invalidf("the query is not valid GraphQL (line %d, column %d)", loc.Line, loc.Column)
		}
		return nil, invalidf("the query is not valid GraphQL")
	}
	if len(doc.Operations) == 0 {
		return nil, invalidf("the query has no operation")
	}
	w := walker{frags: doc.Fragments}
	if err := w.index(); err != nil {
		return nil, err
	}
	for _, op := range doc.Operations {
		write := op.Operation == ast.Mutation
		w.sum.mutation = w.sum.mutation || write
		found, err := w.selections(op.SelectionSet, write, 0)
		if err != nil {
			return nil, err
		}
		if write && !found {
			return nil, invalidf("a mutation must select a field other than __typename")
		}
	}
	e.cache.put(query, &w.sum)
	return &w.sum, nil
}

// Fragment states while walking, per kind of operation.
const (
	unvisited uint8 = iota
	walking
	doneNothing // selects only __typename or introspection
	doneFields
)

// walker collects the root fields of one document.
type walker struct {
	sum    summary
	frags  ast.FragmentDefinitionList
	byName map[string]int // only for many fragments; else a linear search
	states []uint8        // read states, then write states, per fragment
}

// index prepares the lookup of the document's fragments. Two fragments of
// one name are refused: backends could pick either.
func (w *walker) index() error {
	if len(w.frags) > 8 {
		w.byName = make(map[string]int, len(w.frags))
		for i, f := range w.frags {
			if _, dup := w.byName[f.Name]; dup {
				return invalidf("fragment %s is defined twice", shortQuote(f.Name))
			}
			w.byName[f.Name] = i
		}
		return nil
	}
	for i, f := range w.frags {
		for _, g := range w.frags[:i] {
			if g.Name == f.Name {
				return invalidf("fragment %s is defined twice", shortQuote(f.Name))
			}
		}
	}
	return nil
}

func (w *walker) fragment(name string) int {
	if w.byName != nil {
		if i, ok := w.byName[name]; ok {
			return i
		}
		return -1
	}
	for i, f := range w.frags {
		if f.Name == name {
			return i
		}
	}
	return -1
}

// selections walks a root selection set and reports whether it selects a
// field other than __typename and introspection. Each fragment is walked
// once per kind of operation, so spreading one fragment many times (or in
// many operations) costs nothing more.
func (w *walker) selections(set ast.SelectionSet, write bool, depth int) (found bool, err error) {
	if depth > maxFragmentDepth {
		return false, invalidf("fragments are nested more than %d deep at the root of an operation", maxFragmentDepth)
	}
	for _, sel := range set {
		var f bool
		switch s := sel.(type) {
		case *ast.Field:
			f, err = w.field(s.Name, write)
		case *ast.InlineFragment:
			// Whatever the type condition: without a schema we cannot
			// tell which root type it applies to.
			f, err = w.selections(s.SelectionSet, write, depth+1)
		case *ast.FragmentSpread:
			f, err = w.spread(s.Name, write, depth+1)
		}
		if err != nil {
			return false, err
		}
		found = found || f
	}
	return found, nil
}

func (w *walker) spread(name string, write bool, depth int) (bool, error) {
	i := w.fragment(name)
	if i < 0 {
		return false, invalidf("fragment %s is not defined", shortQuote(name))
	}
	if w.states == nil {
		w.states = make([]uint8, 2*len(w.frags))
	}
	st := i
	if write {
		st += len(w.frags)
	}
	switch w.states[st] {
	case walking:
		return false, invalidf("fragment %s spreads itself, directly or through other fragments", shortQuote(name))
	case doneNothing:
		return false, nil
	case doneFields:
		return true, nil
	}
	w.states[st] = walking
	found, err := w.selections(w.frags[i].SelectionSet, write, depth)
	if err != nil {
		return false, err
	}
	w.states[st] = doneNothing
	if found {
		w.states[st] = doneFields
	}
	return found, nil
}

func (w *walker) field(name string, write bool) (bool, error) {
	switch name {
	case "__typename":
		return false, nil
	case "__schema", "__type":
		if write {
			return false, invalidf("__schema and __type belong in a query, not a mutation")
		}
		w.sum.introspection = true
		return false, nil
	}
	w.sum.roots = append(w.sum.roots, rootField{name: name, write: write})
	return true, nil
}

// Bounds of the document cache: documents as long as hand-written queries
// get, and memory of at most cacheEntries*cacheMaxDoc for the documents.
const (
	cacheEntries = 1024
	cacheMaxDoc  = 16 << 10
)

// docCache maps documents to their summaries. When full, it forgets one
// entry at random: a client sending ever new documents only makes itself
// slower, it cannot pin the cache.
type docCache struct {
	mu sync.Mutex
	m  map[string]*summary
}

func (c *docCache) get(doc string) *summary {
	if len(doc) > cacheMaxDoc {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[doc]
}

func (c *docCache) put(doc string, s *summary) {
	if len(doc) > cacheMaxDoc {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]*summary)
	}
	if len(c.m) >= cacheEntries {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[doc] = s
}
