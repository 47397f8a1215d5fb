package graphql

import (
	"fmt"
	"slices"
	"strings"
)

// Endpoint is one GraphQL endpoint: the paths it is served on and the area
// of each root field. Build it with NewEndpoint, which validates it; do not
// copy it once in use (it holds a cache of parsed documents).
type Endpoint struct {
	// Paths are the request paths of the endpoint, as configured.
	Paths []string
	// Fields maps a root field name (query, mutation or subscription) to
	// its area.
	Fields map[string]string
	// Default is the area of root fields not in Fields; "" refuses them.
	Default string

	cache docCache
}

// NewEndpoint builds an endpoint from the Caddyfile's
// `graphql <path>… { field <area> <rootField>…; default <area> }`:
// fields maps each area to its root fields. A root field may belong to one
// area only, so that no order of lines decides what a key may do. Area names
// are only checked for being non-empty: the caller knows which areas exist.
func NewEndpoint(paths []string, fields map[string][]string, def string) (*Endpoint, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("graphql endpoint needs at least one path, such as /mce/api/graphql")
	}
	for i, p := range paths {
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("graphql path %q must start with /", p)
		}
		if slices.Contains(paths[:i], p) {
			return nil, fmt.Errorf("graphql path %q is listed twice", p)
		}
	}
	if len(fields) == 0 && def == "" {
		return nil, fmt.Errorf("graphql endpoint %s maps no root field to an area: add a field line or a default", paths[0])
	}
	e := &Endpoint{Paths: slices.Clone(paths), Fields: make(map[string]string), Default: def}
	// Sorted, so that the error for a field listed in two areas is stable.
	areas := make([]string, 0, len(fields))
	for area := range fields {
		areas = append(areas, area)
	}
	slices.Sort(areas)
	for _, area := range areas {
		if err := checkArea(area); err != nil {
			return nil, err
		}
		if len(fields[area]) == 0 {
			return nil, fmt.Errorf("graphql field line for area %q lists no root field", area)
		}
		for _, f := range fields[area] {
			if err := checkFieldName(f); err != nil {
				return nil, err
			}
			if other, dup := e.Fields[f]; dup {
				if other == area {
					return nil, fmt.Errorf("graphql root field %q is listed twice for area %q", f, area)
				}
				return nil, fmt.Errorf("graphql root field %q is in two areas, %q and %q; a root field belongs to one area", f, other, area)
			}
			e.Fields[f] = area
		}
	}
	if def != "" {
		if err := checkArea(def); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// Areas returns every area the endpoint can map a root field to, sorted and
// deduplicated: introspection needs read on one of them.
func (e *Endpoint) Areas() []string {
	var areas []string
	for _, a := range e.Fields {
		areas = append(areas, a)
	}
	if e.Default != "" {
		areas = append(areas, e.Default)
	}
	slices.Sort(areas)
	return slices.Compact(areas)
}

func checkArea(area string) error {
	if strings.TrimSpace(area) == "" {
		return fmt.Errorf("graphql area name is empty")
	}
	return nil
}

// checkFieldName accepts a GraphQL Name, /[_A-Za-z][_0-9A-Za-z]*/. Names
// starting with "__" are reserved for introspection, which has its own rule.
func checkFieldName(f string) error {
	if f == "" {
		return fmt.Errorf("graphql root field name is empty")
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		letter := c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
		if !letter && (i == 0 || c < '0' || c > '9') {
			return fmt.Errorf("graphql root field %q is not a GraphQL name (letters, digits and _, not starting with a digit)", f)
		}
	}
	if strings.HasPrefix(f, "__") {
		return fmt.Errorf("graphql root field %q is reserved: __typename needs no right and __schema / __type need read on some area of the endpoint", f)
	}
	return nil
}
