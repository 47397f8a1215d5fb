package keystore

import (
	"fmt"
	"slices"
	"sort"

	"github.com/keygate/keygate/keystore/graphql"
)

// GraphQLEndpoint is a `graphql` block: requests to its paths are judged by
// the GraphQL document they carry, not by path areas (docs/graphql.md).
type GraphQLEndpoint struct {
	*graphql.Endpoint
	// MaxBody is the largest body read (0: graphql.DefaultMaxBody).
	MaxBody int64

	patterns []areaPattern
}

// AddGraphQL attaches a GraphQL endpoint. Its paths follow the syntax of
// area paths; every area it maps root fields to must be an area of a, so a
// typo in a field line is a startup error rather than a field nobody can
// use.
func (a *Areas) AddGraphQL(e *graphql.Endpoint, maxBody int64) error {
	if maxBody < 0 {
		return fmt.Errorf("graphql %s: max_body must not be negative", e.Paths[0])
	}
	for _, area := range e.Areas() {
		if !a.Has(area) {
			return fmt.Errorf("graphql %s: area %q is not defined; add an `area %s <paths>…` line (%s)", e.Paths[0], area, area, a.configured())
		}
	}
	ep := &GraphQLEndpoint{Endpoint: e, MaxBody: maxBody}
	for _, p := range e.Paths {
		ap, err := compilePattern("graphql", p)
		if err != nil {
			return err
		}
		for _, other := range a.graphql {
			if other.match(ap.text) {
				return fmt.Errorf("graphql path %q is already served by the graphql block of %s", p, other.Paths[0])
			}
		}
		ep.patterns = append(ep.patterns, ap)
	}
	a.graphql = append(a.graphql, ep)
	return nil
}

// GraphQL returns the endpoint serving the cleaned path, or nil.
func (a *Areas) GraphQL(cleanPath string) *GraphQLEndpoint {
	for _, ep := range a.graphql {
		if ep.match(cleanPath) {
			return ep
		}
	}
	return nil
}

func (ep *GraphQLEndpoint) match(cleanPath string) bool {
	for i := range ep.patterns {
		if ep.patterns[i].match(cleanPath) {
			return true
		}
	}
	return false
}

// graphQLFields returns the root fields mapped to area by any endpoint,
// sorted (the default area is shown as "*").
func (a *Areas) graphQLFields(area string) []string {
	out := []string{}
	for _, ep := range a.graphql {
		for f, ar := range ep.Fields {
			if ar == area && !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
		if ep.Default == area && !slices.Contains(out, "*") {
			out = append(out, "*")
		}
	}
	sort.Strings(out)
	return out
}
