package keystore

import (
	"context"
	"time"
)

// ReportRow is one key of the licence report.
type ReportRow struct {
	ID, Name, User string
	Requests       int64
}

// Report is GET /usage: every key's requests in [From, To] (UTC days).
type Report struct {
	From, To time.Time
	Keys     []ReportRow
	Total    int64
}

// Report returns the requests of every key (of user, if set) in the
// range, in creation order, keys without requests included: the licence
// report. Days default like Usage (the last 30). keys:self sees its own
// user only.
//
// Stored totals are read once. Keys with counts of this instance not yet
// flushed are read again one by one, consistently with those counts (see
// Usage), so a flush during the report neither hides nor doubles them.
func (s *Service) Report(ctx context.Context, a Actor, from, to time.Time, user string) (Report, error) {
	if err := s.mayManage(a); err != nil {
		return Report{}, err
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
	}
	totals, err := s.Store.UsageTotals(ctx, from, to)
	if err != nil {
		return Report{}, serviceStoreErr(err, "usage totals")
	}
	r := Report{From: from, To: to, Keys: make([]ReportRow, 0, len(keys))}
	for _, k := range keys {
		n := totals[k.ID]
		if unflushed[k.ID] {
			days, err := s.Usage(ctx, LocalActor(), k.ID, from, to)
			if err != nil {
				return Report{}, err
			}
			n = 0
			for _, d := range days {
				n += d.Requests
			}
		}
		r.Keys = append(r.Keys, ReportRow{ID: k.ID, Name: k.Name, User: k.User, Requests: n})
		r.Total += n
	}
	return r, nil
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
