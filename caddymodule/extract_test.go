package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const testKey = "kg_4Fq9aaaaaaaaaaaaaaaaaaaaaaaaaaaa000000"

func TestExtract(t *testing.T) {
	t.Parallel()
	x := KeySources{Bearer: true}.extractor()
	other := strings.Replace(testKey, "4Fq9", "ZZZZ", 1)
	tests := []struct {
		name      string
		target    string
		header    http.Header
		wantKey   string
		found     bool
		ambiguous bool
		overrides []string
	}{
		{name: "none", target: "/a", found: false},
		{name: "header", target: "/a", header: http.Header{"Apikey": {testKey}}, wantKey: testKey, found: true},
		{name: "query", target: "/a?x=1&apikey=" + testKey, wantKey: testKey, found: true},
		{name: "encoded query name", target: "/a?%61pikey=" + testKey, wantKey: testKey, found: true},
		{name: "semicolon is data", target: "/a?x=1;apikey=" + testKey, found: false},
		{name: "query name is exact", target: "/a?APIKEY=" + testKey, found: false},
		{name: "bearer", target: "/a", header: http.Header{"Authorization": {"Bearer " + testKey}}, wantKey: testKey, found: true},
		{name: "bearer lower case", target: "/a", header: http.Header{"Authorization": {"bearer " + testKey}}, wantKey: testKey, found: true},
		{name: "basic is ignored", target: "/a", header: http.Header{"Authorization": {"Basic abc"}}, found: false},
		{name: "same twice", target: "/a?apikey=" + testKey, header: http.Header{"Apikey": {testKey}}, wantKey: testKey, found: true},
		{name: "two distinct headers", target: "/a", header: http.Header{"Apikey": {testKey, other}}, found: true, ambiguous: true},
		{name: "header and query differ", target: "/a?apikey=" + other, header: http.Header{"Apikey": {testKey}}, found: true, ambiguous: true},
		{name: "two query values", target: "/a?apikey=" + testKey + "&apikey=" + other, found: true, ambiguous: true},
		{name: "empty header", target: "/a", header: http.Header{"Apikey": {""}}, wantKey: "", found: true},
		{name: "overrides", target: "/a?_method=DELETE", header: http.Header{"X-Http-Method-Override": {"PATCH"}}, overrides: []string{"DELETE", "PATCH"}},
		{name: "IIS override", target: "/a", header: http.Header{"X-Http-Method": {"DELETE"}}, overrides: []string{"DELETE"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tc.target, nil)
			for k, v := range tc.header {
				r.Header[k] = v
			}
			var ex extraction
			x.extract(r, &ex)
			if ex.found != tc.found || ex.ambiguous != tc.ambiguous {
				t.Fatalf("found=%v ambiguous=%v, want %v %v", ex.found, ex.ambiguous, tc.found, tc.ambiguous)
			}
			if tc.found && !tc.ambiguous && ex.key != tc.wantKey {
				t.Fatalf("key: got %q, want %q", ex.key, tc.wantKey)
			}
			if strings.Join(ex.overrides, ",") != strings.Join(tc.overrides, ",") {
				t.Fatalf("overrides: got %v, want %v", ex.overrides, tc.overrides)
			}
		})
	}
}

func TestScrub(t *testing.T) {
	t.Parallel()
	x := KeySources{Bearer: true}.extractor()
	tests := []struct {
		name      string
		target    string
		header    http.Header
		wantQuery string
	}{
		{name: "header only", target: "/a?lean=1", header: http.Header{"Apikey": {testKey}}, wantQuery: "lean=1"},
		{name: "query middle", target: "/a?lean=1&apikey=" + testKey + "&pageno=2", wantQuery: "lean=1&pageno=2"},
		{name: "encoded name", target: "/a?%61pikey=" + testKey + "&lean=1", wantQuery: "lean=1"},
		{name: "semicolon is data", target: "/a?apikey=" + testKey + `&oslc.where=description="a;b"&lean=1`, wantQuery: `oslc.where=description="a;b"&lean=1`},
		{name: "rest byte for byte", target: "/a?b=%2a+x&&apikey=" + testKey + "&c=;&d", wantQuery: "b=%2a+x&&c=;&d"},
		{name: "key first", target: "/a?apikey=" + testKey + "&lean=1", wantQuery: "lean=1"},
		{name: "only key", target: "/a?apikey=" + testKey, wantQuery: ""},
		{name: "bearer", target: "/a", header: http.Header{"Authorization": {"Bearer " + testKey}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tc.target, nil)
			for k, v := range tc.header {
				r.Header[k] = v
			}
			var ex extraction
			x.extract(r, &ex)
			x.scrub(r, &ex)
			if r.URL.RawQuery != tc.wantQuery {
				t.Fatalf("query: got %q, want %q", r.URL.RawQuery, tc.wantQuery)
			}
			if strings.Contains(r.RequestURI, testKey) {
				t.Fatalf("RequestURI still holds the key: %q", r.RequestURI)
			}
			for name, vals := range r.Header {
				for _, v := range vals {
					if strings.Contains(v, testKey) {
						t.Fatalf("header %s still holds the key", name)
					}
				}
			}
		})
	}
}
