package keystore

import (
	"context"
	"time"
)

// ReportRow is one key of the licence report.
type ReportRow struct {
	ID, Name, User string
	Requests       int64
	// By splits Requests by area when the report was asked with ByArea.
	By map[string]int64
}

// Report is GET /usage: every key's requests in [From, To] (UTC days).
type Report struct {
	From, To time.Time
	Keys     []ReportRow
	Total    int64
	// By is the sum of the keys' By (with ByArea): requests per area.
	By map[string]int64
}

// Report returns the requests of every key (of user, if set) in the
// range, in creation order, keys without requests included: the licence
// report. Days default like Usage (the last 30). keys:self sees its own
// user only. With by (ByArea or ByStatus; "" for none) each row, and the
// report as a whole, is also split by area or answer class.
//
// Stored totals are read once. Keys with counts of this instance not yet
// flushed are read again one by one, consistently with those counts (see
// Usage), so a flush during the report neither hides nor doubles them.
func (s *Service) Report(ctx context.Context, a Actor, from, to time.Time, user, by string) (Report, error) {
	if err := s.mayManage(a); err != nil {
		return Report{}, err
	}
	if by != "" && !ValidBreakdown(by) {
		return Report{}, invalidf("by %q must be %q or %q", by, ByArea, ByStatus)
	}
	if !a.admin() {
		if user == "" {
			user = a.User
		}
		if user != a.User {
			return Report{}, forbiddenf("keys:self may only report on its own user %q", a.User)
		}
	}
	from, to, err := s.usageRange(from, to)
	if err != nil {
		return Report{}, err
	}

	var keys []*Key
	if err := s.eachKey(ctx, user, func(k *Key) { keys = append(keys, k) }); err != nil {
		return Report{}, err
	}
	// Before the totals are read: a key whose counts are all flushed now
	// is exact in them (later requests are after the report).
	unflushed := map[string]bool{}
	if s.Pending != nil {
		for _, k := range keys {
			if len(s.Pending.PendingUsage(k.ID)) > 0 {
				unflushed[k.ID] = true
			}
		}
		// A part can be pending when its key's count is not: the class
		// of an answer is counted once the answer is done, possibly
		// after a flush took the key's count.
		if p, ok := s.Pending.(interface{ PendingPartIDs(prefix string) []string }); ok && by != "" {
			for _, id := range p.PendingPartIDs("") {
				if kid, b, _, ok := SplitPartUsageID(id); ok && b == by {
					unflushed[kid] = true
				}
			}
		}
	}
	totals, err := s.Store.UsageTotals(ctx, from, to)
	if err != nil {
		return Report{}, serviceStoreErr(err, "usage totals")
	}
	r := Report{From: from, To: to, Keys: make([]ReportRow, 0, len(keys))}
	var parts map[string]map[string]int64 // key id → part → requests
	if by != "" {
		r.By, parts = map[string]int64{}, map[string]map[string]int64{}
		for id, n := range totals {
			if kid, b, name, ok := SplitPartUsageID(id); ok && b == by {
				if parts[kid] == nil {
					parts[kid] = map[string]int64{}
				}
				parts[kid][name] = n
			}
		}
	}
	for _, k := range keys {
		row := ReportRow{ID: k.ID, Name: k.Name, User: k.User, Requests: totals[k.ID]}
		if by != "" {
			row.By = parts[k.ID]
		}
		if unflushed[k.ID] {
			if err := s.reportRowAgain(ctx, &row, from, to, by); err != nil {
				return Report{}, err
			}
		}
		if row.By == nil && by != "" {
			row.By = map[string]int64{}
		}
		for name, n := range row.By {
			r.By[name] += n
		}
		r.Keys = append(r.Keys, row)
		r.Total += row.Requests
	}
	return r, nil
}

// reportRowAgain reads a key with unflushed counts again, consistently with
// them (see Usage), its parts too when by is set.
func (s *Service) reportRowAgain(ctx context.Context, row *ReportRow, from, to time.Time, by string) error {
	var (
		days []DayUsage
		err  error
	)
	if by != "" {
		days, err = s.UsageBy(ctx, LocalActor(), row.ID, from, to, by)
	} else {
		days, err = s.Usage(ctx, LocalActor(), row.ID, from, to)
	}
	if err != nil {
		return err
	}
	row.Requests = 0
	if by != "" {
		row.By = map[string]int64{}
	}
	for _, d := range days {
		row.Requests += d.Requests
		for name, n := range d.By {
			row.By[name] += n
		}
	}
	return nil
}

// eachKey calls fn with every key (of user, if set), in creation order.
func (s *Service) eachKey(ctx context.Context, user string, fn func(*Key)) error {
	if user != "" {
		if err := checkAdminText("user", user, maxUserLen, true); err != nil {
			return err
		}
	}
	return s.eachKeyOfUser(ctx, user, "", fn)
}
