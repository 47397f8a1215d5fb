package caddymodule

import (
	"sync/atomic"

	"github.com/keygate/keygate/keystore"
)

// resultLabels is the result label of keygate_requests_total for each
// outcome of the Gate. Several outcomes share a label (the three 403s are
// "forbidden"); every outcome has one.
var resultLabels = [keystore.NumOutcomes]string{
	keystore.Allowed:          "ok",
	keystore.InvalidKey:       "invalid",
	keystore.TooManyFailures:  "limited",
	keystore.ForbiddenRead:    "forbidden",
	keystore.ForbiddenWrite:   "forbidden",
	keystore.NoCredential:     "forbidden",
	keystore.NotAdmin:         "forbidden",
	keystore.RateLimited:      "limited",
	keystore.QuotaExceeded:    "limited",
	keystore.StoreUnavailable: "unavailable",
	keystore.Canceled:         "canceled",
	keystore.InvalidRequest:   "bad_request",
	keystore.MethodNotAllowed: "bad_request",
	keystore.TooLarge:         "bad_request",
	keystore.InvalidPath:      "invalid_path",
	keystore.ForbiddenAddress: "forbidden",
}

// resultNames are the distinct labels, in the order they are exported.
var resultNames = []string{"ok", "invalid", "forbidden", "limited", "unavailable", "canceled", "bad_request", "invalid_path"}

// outcomeCounters count requests per Gate outcome without locks.
type outcomeCounters [keystore.NumOutcomes]atomic.Uint64

func (c *outcomeCounters) add(o keystore.Outcome) { c[o].Add(1) }

// byResult sums the counters per result label.
func (c *outcomeCounters) byResult() map[string]uint64 {
	m := make(map[string]uint64, len(resultNames))
	for _, n := range resultNames {
		m[n] = 0
	}
	for o := range c {
		m[resultLabels[o]] += c[o].Load()
	}
	return m
}
