package keystore

import (
	"fmt"
	"sort"
	"strings"
)

// Level is an access level within an area.
type Level uint8

const (
	// LevelNone grants nothing.
	LevelNone Level = iota
	// LevelRead allows GET, HEAD and OPTIONS.
	LevelRead
	// LevelWrite allows every method.
	LevelWrite
)

func (l Level) String() string {
	switch l {
	case LevelRead:
		return "read"
	case LevelWrite:
		return "write"
	}
	return "none"
}

// Admin rights (docs/design.md §2, §4).
const (
	RightKeysAdmin = "keys:admin"
	RightKeysSelf  = "keys:self"
	// AllAreas is the wildcard area in "*:read" and "*:write".
	AllAreas = "*"
)

// Rights is the parsed form of a key's rights list.
type Rights struct {
	// Areas maps an area name (or AllAreas) to the level granted.
	Areas map[string]Level
	Admin bool // keys:admin
	Self  bool // keys:self
}

// ParseRights parses "area:read", "area:write", "*:read", "*:write",
// "keys:admin" and "keys:self". areaKnown reports whether an area is
// configured; nil accepts every area name. Duplicates are merged (the
// higher level wins). An empty list is an error: least privilege means a key
// must say what it is for.
func ParseRights(list []string, areaKnown func(string) bool) (Rights, error) {
	r := Rights{Areas: map[string]Level{}}
	if len(list) == 0 {
		return r, fmt.Errorf("rights must not be empty; give at least one of area:read, area:write, keys:admin, keys:self")
	}
	for _, s := range list {
		switch s {
		case RightKeysAdmin:
			r.Admin = true
			continue
		case RightKeysSelf:
			r.Self = true
			continue
		}
		area, lvl, ok := strings.Cut(s, ":")
		if !ok || area == "" {
			return r, fmt.Errorf("right %q must look like area:read or area:write", s)
		}
		var level Level
		switch lvl {
		case "read":
			level = LevelRead
		case "write":
			level = LevelWrite
		default:
			return r, fmt.Errorf("right %q has level %q; the level must be read or write", s, lvl)
		}
		if area == "keys" {
			return r, fmt.Errorf("right %q is not valid; admin rights are keys:admin and keys:self", s)
		}
		if area != AllAreas && areaKnown != nil && !areaKnown(area) {
			return r, &UnknownAreaError{Right: s, Area: area}
		}
		if level > r.Areas[area] {
			r.Areas[area] = level
		}
	}
	return r, nil
}

// Level returns the level granted in area, counting the wildcard.
func (r Rights) Level(area string) Level {
	l := r.Areas[area]
	if w := r.Areas[AllAreas]; w > l {
		return w
	}
	return l
}

// Covers reports whether r grants everything o grants (used to stop
// keys:self from handing out wider rights than it holds).
func (r Rights) Covers(o Rights) bool {
	if o.Admin && !r.Admin {
		return false
	}
	if o.Self && !(r.Self || r.Admin) {
		return false
	}
	for area, l := range o.Areas {
		if area == AllAreas {
			if r.Areas[AllAreas] < l {
				return false
			}
			continue
		}
		if r.Level(area) < l {
			return false
		}
	}
	return true
}

// Strings returns the canonical, sorted rights list.
func (r Rights) Strings() []string {
	out := make([]string, 0, len(r.Areas)+2)
	for area, l := range r.Areas {
		out = append(out, area+":"+l.String())
	}
	if r.Admin {
		out = append(out, RightKeysAdmin)
	}
	if r.Self {
		out = append(out, RightKeysSelf)
	}
	sort.Strings(out)
	return out
}

// RequiredLevel returns the level a request needs: read for GET, HEAD and
// OPTIONS, write for anything else. override holds the values of
// X-HTTP-Method-Override, X-Method-Override and _method; any non-read value
// among them makes the request a write (Maximo tunnels PATCH and DELETE
// through POST this way).
func RequiredLevel(method string, overrides ...string) Level {
	if !isReadMethod(method) {
		return LevelWrite
	}
	for _, o := range overrides {
		if o != "" && !isReadMethod(strings.ToUpper(strings.TrimSpace(o))) {
			return LevelWrite
		}
	}
	return LevelRead
}

func isReadMethod(m string) bool {
	return m == "GET" || m == "HEAD" || m == "OPTIONS"
}
