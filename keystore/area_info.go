package keystore

import (
	"fmt"
	"strings"
)

// AreaInfo describes one configured area as the operator wrote it, for
// GET /areas and the console's rights editor.
type AreaInfo struct {
	// Name is the area's name, as used in rights ("assets:read").
	Name string
	// Paths are the area's path patterns exactly as configured.
	Paths []string
	// Level is the access level every method needs in this area: "" for
	// the usual read/write split, "write" for an area declared level write.
	Level string
	// GraphQLFields are the GraphQL root fields mapped to this area ("*":
	// it is the default area of a graphql endpoint).
	GraphQLFields []string
}

// Info returns the configured areas sorted by name, each with its patterns
// in the order they were configured. A nil *Areas has none.
func (a *Areas) Info() []AreaInfo {
	if a == nil {
		return []AreaInfo{}
	}
	out := make([]AreaInfo, 0, len(a.names))
	byName := make(map[string]int, len(a.names))
	for _, name := range a.names {
		byName[name] = len(out)
		info := AreaInfo{Name: name, Paths: []string{}, GraphQLFields: a.graphQLFields(name)}
		if a.writeOnly[name] {
			info.Level = "write"
		}
		out = append(out, info)
	}
	for i := range a.patterns {
		p := &a.patterns[i]
		if j, ok := byName[p.area]; ok {
			out[j].Paths = append(out[j].Paths, p.raw)
		}
	}
	return out
}

// configured names the configured areas for an error message.
func (a *Areas) configured() string {
	if a == nil || len(a.names) == 0 {
		return "no areas are configured"
	}
	return "configured areas: " + strings.Join(a.names, ", ")
}

// UnknownAreaError is ParseRights' refusal of a right naming an area that
// is not configured.
type UnknownAreaError struct {
	Right string // the right as given, e.g. "billing:read"
	Area  string // its area, e.g. "billing"
}

func (e *UnknownAreaError) Error() string {
	return fmt.Sprintf("right %q names unknown area %q", e.Right, e.Area)
}

// AreaList returns the configured areas to an admin key (keys:admin or
// keys:self) or the local endpoint.
func (s *Service) AreaList(a Actor) ([]AreaInfo, error) {
	if err := s.mayManage(a); err != nil {
		return nil, err
	}
	return s.Areas.Info(), nil
}
