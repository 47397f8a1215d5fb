package graphql

import (
	"reflect"
	"strings"
	"testing"
)

func TestNewEndpoint(t *testing.T) {
	t.Parallel()
	paths := []string{"/mce/api/graphql"}
	tests := []struct {
		name    string
		paths   []string
		fields  map[string][]string
		def     string
		wantErr string // "" = valid
	}{
		{name: "fields and default", paths: paths, fields: map[string][]string{"assets": {"asset", "assets"}}, def: "reports"},
		{name: "default only", paths: paths, def: "reports"},
		{name: "fields only", paths: []string{"/a", "/b"}, fields: map[string][]string{"assets": {"asset"}}},
		{name: "no path", fields: map[string][]string{"assets": {"asset"}}, wantErr: "at least one path"},
		{name: "relative path", paths: []string{"graphql"}, fields: map[string][]string{"assets": {"asset"}}, wantErr: "must start with /"},
		{name: "path twice", paths: []string{"/g", "/g"}, fields: map[string][]string{"assets": {"asset"}}, wantErr: "listed twice"},
		{name: "nothing mapped", paths: paths, wantErr: "maps no root field"},
		{name: "area without fields", paths: paths, fields: map[string][]string{"assets": nil}, wantErr: "lists no root field"},
		{name: "empty area", paths: paths, fields: map[string][]string{"": {"asset"}}, wantErr: "area name is empty"},
		{name: "blank default", paths: paths, fields: map[string][]string{"assets": {"asset"}}, def: " ", wantErr: "area name is empty"},
		{name: "field in two areas", paths: paths, fields: map[string][]string{"assets": {"asset"}, "workorders": {"workOrder", "asset"}}, wantErr: `"asset" is in two areas, "assets" and "workorders"`},
		{name: "field twice in one area", paths: paths, fields: map[string][]string{"assets": {"asset", "asset"}}, wantErr: "listed twice for area"},
		{name: "empty field", paths: paths, fields: map[string][]string{"assets": {""}}, wantErr: "field name is empty"},
		{name: "field with a dash", paths: paths, fields: map[string][]string{"assets": {"work-order"}}, wantErr: "not a GraphQL name"},
		{name: "field starting with a digit", paths: paths, fields: map[string][]string{"assets": {"1asset"}}, wantErr: "not a GraphQL name"},
		{name: "field with digits and _", paths: paths, fields: map[string][]string{"assets": {"_asset2"}}},
		{name: "__schema", paths: paths, fields: map[string][]string{"assets": {"__schema"}}, wantErr: "reserved"},
		{name: "__typename", paths: paths, fields: map[string][]string{"assets": {"__typename"}}, wantErr: "reserved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, err := NewEndpoint(tt.paths, tt.fields, tt.def)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				if !reflect.DeepEqual(e.Paths, tt.paths) || e.Default != tt.def {
					t.Errorf("got %+v", e)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestEndpointAreas(t *testing.T) {
	t.Parallel()
	e, err := NewEndpoint([]string{"/g"}, map[string][]string{
		"workorders": {"workOrder", "workOrders", "createWorkOrder"},
		"assets":     {"asset", "assets"},
	}, "assets")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := e.Areas(), []string{"assets", "workorders"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got, want := e.Fields["createWorkOrder"], "workorders"; got != want {
		t.Errorf("Fields[createWorkOrder]: got %q, want %q", got, want)
	}
}

// NewEndpoint keeps its own copy of the paths.
func TestNewEndpointCopiesPaths(t *testing.T) {
	t.Parallel()
	paths := []string{"/g"}
	e, err := NewEndpoint(paths, nil, "reports")
	if err != nil {
		t.Fatal(err)
	}
	paths[0] = "/other"
	if e.Paths[0] != "/g" {
		t.Errorf("got %q, want /g", e.Paths[0])
	}
}
