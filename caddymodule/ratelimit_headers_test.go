package caddymodule

import (
	"net/http"
	"slices"
	"strconv"
	"testing"
)

func TestRateLimitHeaders(t *testing.T) {
	for _, c := range []struct{ limit, remaining, reset int64 }{
		{600, 599, 60}, {0, 0, 0}, {smallValues - 1, 0, 1}, {smallValues, 5, 1}, {1_000_000, 999_999, 1}, {600, 10, 86400},
	} {
		h := http.Header{}
		setRateLimitHeaders(h, c.limit, c.remaining, c.reset)
		want := map[string]int64{"Ratelimit-Limit": c.limit, "Ratelimit-Remaining": c.remaining, "Ratelimit-Reset": c.reset}
		for name, v := range want {
			if got := h.Values(name); !slices.Equal(got, []string{itoa(v)}) {
				t.Errorf("%+v: %s = %q, want %d", c, name, got, v)
			}
		}
		// A later Add must not write into the shared table.
		h.Add("Ratelimit-Limit", "x")
	}
	for _, n := range []int{0, 600, smallValues - 1} {
		// cap 1: an Add to a header holding a shared value copies it.
		if got := smallHeaderValues[n]; len(got) != 1 || cap(got) != 1 || got[0] != itoa(int64(n)) {
			t.Fatalf("shared value of %d: %q (cap %d)", n, got, cap(got))
		}
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }
