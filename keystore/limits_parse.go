package keystore

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// The errors of ParseRateText and ParseQuotaText, worded to follow the text
// they refused ("invalid --rate \"x\": ...").
var (
	errRateShape    = errors.New("want <requests>/<duration>, e.g. 100/1m")
	errQuotaShape   = errors.New("want <requests>/day or <requests>/month, e.g. 10000/month")
	errLimitCount   = errors.New("the request count must be a positive whole number")
	errRateDuration = errors.New("the period must be a duration such as 1s, 1m or 1h")
	errRatePositive = errors.New("the period must be positive")
	errQuotaPeriod  = errors.New("the period must be day or month")
)

// ParseRateText parses the text form of a rate, "<n>/<duration>" such as
// "100/1m" or "1000/1h30m": a positive whole count, a slash and a positive
// Go duration. It trims nothing and knows no shorthand; callers that accept
// "100/s" or spaces (the CLI) normalise first.
func ParseRateText(s string) (Rate, error) {
	n, per, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, errRateShape
	}
	limit, err := parseLimitCount(n)
	if err != nil {
		return Rate{}, err
	}
	d, err := time.ParseDuration(per)
	if err != nil {
		return Rate{}, errRateDuration
	}
	if d <= 0 {
		return Rate{}, errRatePositive
	}
	return Rate{Limit: limit, Per: d}, nil
}

// ParseQuotaText parses the text form of a quota, "<n>/day" or "<n>/month"
// (PeriodDay, PeriodMonth): a positive whole count, a slash and the period,
// in lower case.
func ParseQuotaText(s string) (Quota, error) {
	n, period, ok := strings.Cut(s, "/")
	if !ok {
		return Quota{}, errQuotaShape
	}
	limit, err := parseLimitCount(n)
	if err != nil {
		return Quota{}, err
	}
	if period != PeriodDay && period != PeriodMonth {
		return Quota{}, errQuotaPeriod
	}
	return Quota{Limit: limit, Period: period}, nil
}

func parseLimitCount(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, errLimitCount
	}
	return n, nil
}
