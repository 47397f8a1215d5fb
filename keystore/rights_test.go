package keystore

import (
	"crypto/sha256"
	"strings"
	"testing"
)

func sha256Of(s string) Digest { return sha256.Sum256([]byte(s)) }

func TestParseRights(t *testing.T) {
	t.Parallel()
	known := func(a string) bool { return a == "assets" || a == "workorders" }
	tests := []struct {
		name    string
		in      []string
		want    []string
		wantErr string
	}{
		{name: "read and write", in: []string{"assets:read", "workorders:write"}, want: []string{"assets:read", "workorders:write"}},
		{name: "higher level wins", in: []string{"assets:read", "assets:write"}, want: []string{"assets:write"}},
		{name: "wildcard", in: []string{"*:read"}, want: []string{"*:read"}},
		{name: "admin rights", in: []string{"keys:admin", "keys:self"}, want: []string{"keys:admin", "keys:self"}},
		{name: "empty", in: nil, wantErr: "must not be empty"},
		{name: "no level", in: []string{"assets"}, wantErr: "must look like area:read"},
		{name: "bad level", in: []string{"assets:delete"}, wantErr: `level "delete"`},
		{name: "unknown area", in: []string{"payroll:read"}, wantErr: `unknown area "payroll"`},
		{name: "keys area", in: []string{"keys:write"}, wantErr: "admin rights are keys:admin and keys:self"},
		{name: "empty area", in: []string{":read"}, wantErr: "must look like area:read"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRights(tc.in, known)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(r.Strings(), ","); got != strings.Join(tc.want, ",") {
				t.Fatalf("got %s, want %s", got, strings.Join(tc.want, ","))
			}
		})
	}
}

func TestRightsCovers(t *testing.T) {
	t.Parallel()
	parse := func(s ...string) Rights {
		r, err := ParseRights(s, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	tests := []struct {
		name   string
		holder Rights
		asked  Rights
		want   bool
	}{
		{"same", parse("assets:write"), parse("assets:write"), true},
		{"narrower level", parse("assets:write"), parse("assets:read"), true},
		{"wider level", parse("assets:read"), parse("assets:write"), false},
		{"other area", parse("assets:write"), parse("workorders:read"), false},
		{"wildcard from one area", parse("assets:write"), parse("*:write"), false},
		{"wildcard covers area", parse("*:read"), parse("assets:read"), true},
		{"self cannot grant admin", parse("keys:self", "assets:write"), parse("keys:admin"), false},
		{"self may grant self", parse("keys:self", "assets:read"), parse("keys:self", "assets:read"), true},
		{"admin grants self", parse("keys:admin"), parse("keys:self"), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.holder.Covers(tc.asked); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRequiredLevel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		method    string
		overrides []string
		want      Level
	}{
		{"GET", nil, LevelRead},
		{"HEAD", nil, LevelRead},
		{"OPTIONS", nil, LevelRead},
		{"POST", nil, LevelWrite},
		{"PUT", nil, LevelWrite},
		{"PATCH", nil, LevelWrite},
		{"DELETE", nil, LevelWrite},
		{"GET", []string{"PATCH"}, LevelWrite},
		{"GET", []string{" delete "}, LevelWrite},
		{"GET", []string{"GET"}, LevelRead},
		{"GET", []string{""}, LevelRead},
		{"POST", []string{"GET"}, LevelWrite}, // the literal method counts too
		{"GET", []string{"GET", "PUT"}, LevelWrite},
	}
	for _, tc := range tests {
		if got := RequiredLevel(tc.method, tc.overrides...); got != tc.want {
			t.Errorf("RequiredLevel(%s, %v): got %v, want %v", tc.method, tc.overrides, got, tc.want)
		}
	}
}
