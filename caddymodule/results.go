package caddymodule

import "sync/atomic"

// result is the outcome of one request, the label of keygate_requests_total.
type result int

const (
	resultOK result = iota
	resultInvalid
	resultForbidden
	resultLimited
	resultUnavailable
	numResults
)

var resultNames = [numResults]string{"ok", "invalid", "forbidden", "limited", "unavailable"}

// resultCounters count requests per result without locks.
type resultCounters [numResults]atomic.Uint64

func (c *resultCounters) add(r result) { c[r].Add(1) }
