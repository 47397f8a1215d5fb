package keystore

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// Areas maps request paths to functional areas (assets, workorders, …).
// Patterns follow Caddy's path matcher: "/a/b*" is a prefix, "*/b" a suffix,
// "*x*" a substring, anything else exact; matching is case-insensitive and is
// done on the cleaned, decoded path, so "..", "//", "%2F" and case tricks
// cannot leave an area.
type Areas struct {
	names    []string
	patterns []areaPattern
	// writeOnly holds the areas declared level write: every method needs
	// write there (Maximo runs automation scripts on a GET).
	writeOnly map[string]bool
	graphql   []*GraphQLEndpoint // judged by document instead of by path
}

type areaPattern struct {
	area      string
	writeOnly bool // the area is declared level write
	kind      patternKind
	text      string // lower case, without the stars
	raw       string // as configured, for Info
}

type patternKind uint8

const (
	matchExact patternKind = iota
	matchPrefix
	matchSuffix
	matchSubstring
)

// NewAreas compiles area definitions. Each area needs at least one path
// pattern starting with "/" or "*"; names are letters, digits, "_" and "-".
func NewAreas(defs map[string][]string) (*Areas, error) {
	a := &Areas{}
	for name := range defs {
		a.names = append(a.names, name)
	}
	sort.Strings(a.names)
	for _, name := range a.names {
		if err := ValidateAreaName(name); err != nil {
			return nil, err
		}
		pats := defs[name]
		if len(pats) == 0 {
			return nil, fmt.Errorf("area %q has no paths; give at least one path pattern such as /maximo/oslc/os/mxasset*", name)
		}
		for _, p := range pats {
			ap, err := compilePattern(name, p)
			if err != nil {
				return nil, err
			}
			a.patterns = append(a.patterns, ap)
		}
	}
	return a, nil
}

// RequireWrite declares an area level write: every method, GET included,
// needs write access there.
func (a *Areas) RequireWrite(name string) error {
	if !a.Has(name) {
		return fmt.Errorf("level write for area %q, which is not defined", name)
	}
	if a.writeOnly == nil {
		a.writeOnly = map[string]bool{}
	}
	a.writeOnly[name] = true
	for i := range a.patterns {
		if a.patterns[i].area == name {
			a.patterns[i].writeOnly = true
		}
	}
	return nil
}

// WriteOnly reports whether an area is declared level write.
func (a *Areas) WriteOnly(name string) bool { return a.writeOnly[name] }

// ValidateAreaName checks an area name.
func ValidateAreaName(name string) error {
	if name == "" || name == AllAreas || name == "keys" {
		return fmt.Errorf("area name %q is reserved or empty", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !isAlnum(c) && c != '_' && c != '-' {
			return fmt.Errorf("area name %q may contain only letters, digits, '_' and '-'", name)
		}
	}
	return nil
}

func compilePattern(area, p string) (areaPattern, error) {
	if p == "" || (p[0] != '/' && p[0] != '*') {
		return areaPattern{}, fmt.Errorf("area %q: path %q must start with / (or * for a suffix match)", area, p)
	}
	lp := strings.ToLower(p)
	starts, ends := strings.HasPrefix(lp, "*"), strings.HasSuffix(lp, "*")
	text := strings.Trim(lp, "*")
	if strings.Contains(text, "*") {
		return areaPattern{}, fmt.Errorf("area %q: path %q may use * only at its start or end", area, p)
	}
	ap := areaPattern{area: area, text: text, raw: p}
	switch {
	case starts && ends:
		ap.kind = matchSubstring
	case ends:
		ap.kind = matchPrefix
	case starts:
		ap.kind = matchSuffix
	default:
		ap.kind = matchExact
	}
	if text == "" && ap.kind != matchExact {
		ap.kind = matchPrefix // "*" alone: every path
	}
	return ap, nil
}

// Names returns the configured area names, sorted.
func (a *Areas) Names() []string { return a.names }

// Has reports whether an area of that name is configured.
func (a *Areas) Has(name string) bool {
	i := sort.SearchStrings(a.names, name)
	return i < len(a.names) && a.names[i] == name
}

// CleanPath normalises a decoded request path the way Caddy's path matcher
// does before matching: path.Clean, keeping a leading slash.
func CleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	return path.Clean(p)
}

// Allowed reports whether rights grant `need` on the cleaned path, and the
// matched area (if any). A path in no area is never allowed, even for *:write:
// the wildcard grants every configured area, not unconfigured paths. In an
// area declared level write, every method needs write.
func (a *Areas) Allowed(r *Rights, cleanPath string, need Level) (area string, ok bool) {
	for i := range a.patterns {
		p := &a.patterns[i]
		if !p.match(cleanPath) {
			continue
		}
		if area == "" {
			area = p.area
		}
		n := need
		if p.writeOnly {
			n = LevelWrite
		}
		if r.Level(p.area) >= n {
			return p.area, true
		}
	}
	return area, false
}

// match compares case-insensitively without allocating. Only ASCII letters
// fold: strings.EqualFold would also fold Unicode look-alikes ("ſ" = "s",
// "\u212a" = "k"), letting "/api/ſtatus" match an area's "/api/status"
// although the backend sees another path. Non-ASCII bytes must be equal.
func (p *areaPattern) match(path string) bool {
	n := len(p.text)
	switch p.kind {
	case matchExact:
		return equalFoldASCII(path, p.text)
	case matchPrefix:
		return len(path) >= n && equalFoldASCII(path[:n], p.text)
	case matchSuffix:
		return len(path) >= n && equalFoldASCII(path[len(path)-n:], p.text)
	default:
		for i := 0; i+n <= len(path); i++ {
			if equalFoldASCII(path[i:i+n], p.text) {
				return true
			}
		}
		return false
	}
}

// equalFoldASCII reports whether s equals the lower-case text t when ASCII
// letters of s are lower-cased.
func equalFoldASCII(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != t[i] {
			return false
		}
	}
	return true
}
