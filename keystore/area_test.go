package keystore

import "testing"

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
