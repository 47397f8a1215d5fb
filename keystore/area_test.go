package keystore

import (
	"strings"
	"testing"
)

// TestAreaMatchFoldsASCIIOnly: Unicode case folding ("ſ" = "s", the Kelvin
// sign = "k") must not let a path outside an area match its patterns.
func TestAreaMatchFoldsASCIIOnly(t *testing.T) {
	areas, err := NewAreas(map[string][]string{
		"status": {"/maximo/status", "/api/work*"},
		"assets": {"/maximo/oslc/os/mxapiasset*", "*/assetreport"},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := Rights{Areas: map[string]Level{"status": LevelWrite, "assets": LevelWrite}}
	tests := []struct {
		name string
		path string
		want bool
	}{
		{"exact", "/maximo/status", true},
		{"exact upper case", "/MAXIMO/STATUS", true},
		{"exact long s", "/maximo/ſtatus", false},
		{"prefix kelvin sign", "/api/wor\u212a", false},
		{"prefix upper case", "/API/WORK/1", true},
		{"suffix", "/x/AssetReport", true},
		{"suffix long s", "/x/aſſetreport", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, got := areas.Allowed(&r, tc.path, LevelRead); got != tc.want {
				t.Fatalf("Allowed(%q): got %v, want %v", tc.path, got, tc.want)
			}
		})
	}
}

// TestAreaAllowedCleanedPaths: the handler judges CleanPath of the decoded
// path; "..", "//", an encoded slash (decoded by net/http to "/") and case
// tricks must not leave an area.
func TestAreaAllowedCleanedPaths(t *testing.T) {
	t.Parallel()
	areas, err := NewAreas(map[string][]string{
		"assets":     {"/maximo/oslc/os/mxapiasset*", "/maximo/api/os/mxapiasset*"},
		"workorders": {"/maximo/oslc/os/mxapiwodetail*"},
	})
	if err != nil {
		t.Fatal(err)
	}
	reader := Rights{Areas: map[string]Level{"assets": LevelRead}}
	all := Rights{Areas: map[string]Level{AllAreas: LevelWrite}}
	tests := []struct {
		name   string
		rights Rights
		path   string // decoded, as in r.URL.Path
		need   Level
		want   bool
	}{
		{"in area", reader, "/maximo/oslc/os/mxapiasset", LevelRead, true},
		{"record", reader, "/maximo/oslc/os/mxapiasset/_QkVERk9SRC8xMDAx", LevelRead, true},
		{"upper case", reader, "/MAXIMO/OSLC/OS/MXAPIASSET", LevelRead, true},
		{"write needs write", reader, "/maximo/oslc/os/mxapiasset", LevelWrite, false},
		{"dot-dot out", reader, "/maximo/oslc/os/mxapiasset/../mxapiwodetail", LevelRead, false},
		{"dot-dot in", reader, "/maximo/oslc/os/mxapiwodetail/../mxapiasset", LevelRead, true},
		{"decoded slash out", reader, "/maximo/oslc/os/mxapiasset/..//mxapiwodetail", LevelRead, false},
		{"double slash", reader, "/maximo//oslc/os/mxapiasset", LevelRead, true},
		{"relative", reader, "maximo/oslc/os/mxapiasset", LevelRead, true},
		{"other area", reader, "/maximo/oslc/os/mxapiwodetail", LevelRead, false},
		{"root", reader, "/", LevelRead, false},
		{"wildcard in area", all, "/maximo/oslc/os/mxapiwodetail", LevelWrite, true},
		{"wildcard outside areas", all, "/maximo/oslc/os/mxapipo", LevelRead, false},
		{"dot-dot above root", reader, "/../../maximo/oslc/os/mxapiasset", LevelRead, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, got := areas.Allowed(&tc.rights, CleanPath(tc.path), tc.need); got != tc.want {
				t.Fatalf("Allowed(%q → %q): got %v, want %v", tc.path, CleanPath(tc.path), got, tc.want)
			}
		})
	}
}

func TestNewAreasErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		defs map[string][]string
		want string
	}{
		{"no paths", map[string][]string{"a": nil}, "has no paths"},
		{"relative path", map[string][]string{"a": {"maximo/x"}}, "must start with /"},
		{"inner star", map[string][]string{"a": {"/a/*/b"}}, "only at its start or end"},
		{"bad name", map[string][]string{"a b": {"/x"}}, "may contain only"},
		{"reserved name", map[string][]string{"keys": {"/x"}}, "reserved"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewAreas(tc.defs); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
