package keystore

import (
	"context"
	"strings"
	"time"
)

// ---- reads ----

// Get returns key id.
func (s *Service) Get(ctx context.Context, a Actor, id string) (*Key, error) {
	if err := s.mayManage(a); err != nil {
		return nil, err
	}
	k, err := s.Store.GetKey(ctx, id)
	if err != nil {
		return nil, serviceStoreErr(err, "key "+id)
	}
	if err := mayRead(a, k); err != nil {
		return nil, err
	}
	s.withPendingLastUse(k)
	return k, nil
}

// withPendingLastUse moves LastUsedAt forward to this instance's latest
// unflushed request, so "last used" is exact before the next flush.
func (s *Service) withPendingLastUse(k *Key) {
	if s.Pending == nil {
		return
	}
	for _, u := range s.Pending.PendingUsage(k.ID) {
		if u.LastUsed.IsZero() || (k.LastUsedAt != nil && !u.LastUsed.After(*k.LastUsedAt)) {
			continue
		}
		t := u.LastUsed.UTC().Truncate(time.Second)
		k.LastUsedAt = &t
	}
}

// List returns a page of keys and the next cursor ("" at the end). A
// keys:self actor sees only the keys of its own user.
func (s *Service) List(ctx context.Context, a Actor, f ListFilter) ([]*Key, string, error) {
	if err := s.mayManage(a); err != nil {
		return nil, "", err
	}
	if !a.admin() {
		if f.User != "" && f.User != a.User {
			return nil, "", forbiddenf("keys:self may only list keys of its own user %q", a.User)
		}
		f.User = a.User
	}
	if f.Limit < 0 || f.Limit > MaxPageSize {
		return nil, "", invalidf("limit must be between 1 and %d, got %d", MaxPageSize, f.Limit)
	}
	if f.Status != "" {
		if _, err := ParseStatus(string(f.Status)); err != nil {
			return nil, "", &ServiceError{Kind: KindInvalid, Message: err.Error()}
		}
	}
	f.Now = s.Clock()
	keys, next, err := s.Store.ListKeys(ctx, f)
	if err != nil {
		return nil, "", cursorErr(err, f.Cursor, "key list")
	}
	for _, k := range keys {
		s.withPendingLastUse(k)
	}
	return keys, next, nil
}

// ParseDay parses a YYYY-MM-DD day (UTC).
func ParseDay(field, v string) (time.Time, error) {
	t, err := time.Parse(time.DateOnly, v)
	if err != nil {
		return t, invalidf("%s %q is not a day such as 2026-11-23 (YYYY-MM-DD)", field, v)
	}
	return t, nil
}

// Usage returns the requests of key id per UTC day in [from, to], every day
// included (zero when idle), the stored totals plus this instance's
// unflushed counts, read consistently with each other when Pending is a
// Meter (see Meter.PendingUsageAfter). Zero from/to mean the last 30 days up
// to today.
func (s *Service) Usage(ctx context.Context, a Actor, id string, from, to time.Time) ([]DayUsage, error) {
	if _, err := s.Get(ctx, a, id); err != nil {
		return nil, err
	}
	from, to, err := s.usageRange(from, to)
	if err != nil {
		return nil, err
	}
	counts, err := s.usageCounts(ctx, id, from, to)
	if err != nil {
		return nil, err
	}
	var out []DayUsage
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		out = append(out, DayUsage{Day: d, Requests: counts[d]})
	}
	return out, nil
}

// usageCounts reads the requests of usage id per UTC day in [from, to]: the
// stored totals plus this instance's unflushed counts, read consistently.
func (s *Service) usageCounts(ctx context.Context, id string, from, to time.Time) (map[time.Time]int64, error) {
	var stored []DayUsage
	read := func(ctx context.Context) (err error) {
		stored, err = s.Store.Usage(ctx, id, from, to)
		return err
	}
	// Reading the store and then the pending counts separately would miss
	// the counts of a flush committing in between (in neither) and count
	// twice a batch the store committed but has not acknowledged (in
	// both): a Meter reads its pending counts consistently with the store.
	var (
		pending []UsageDelta
		err     error
	)
	if p, ok := s.Pending.(interface {
		PendingUsageAfter(ctx context.Context, keyID string, from, to time.Time, read func(context.Context) error) ([]UsageDelta, error)
	}); ok {
		pending, err = p.PendingUsageAfter(ctx, id, from, to, read)
	} else if err = read(ctx); err == nil && s.Pending != nil {
		pending = s.Pending.PendingUsage(id)
	}
	if err != nil {
		return nil, serviceStoreErr(err, "usage of "+id)
	}
	counts := map[time.Time]int64{}
	for _, u := range stored {
		counts[startOfDayUTC(u.Day)] += u.Requests
	}
	for _, u := range pending {
		d := startOfDayUTC(u.Day)
		if !d.Before(from) && !d.After(to) {
			counts[d] += u.Requests
		}
	}
	return counts, nil
}

// UsageBy is Usage with each day's requests also split by (ByArea or
// ByStatus) in DayUsage.By, a map present on every day. Each part is read
// like the key's total: stored plus unflushed, consistently. A GraphQL
// document touching two areas counts in both, so areas can add up to more
// than the day's requests; a request still being answered has no class yet.
func (s *Service) UsageBy(ctx context.Context, a Actor, id string, from, to time.Time, by string) ([]DayUsage, error) {
	if !ValidBreakdown(by) {
		return nil, invalidf("by %q must be %q or %q", by, ByArea, ByStatus)
	}
	days, err := s.Usage(ctx, a, id, from, to)
	if err != nil {
		return nil, err
	}
	from, to = days[0].Day, days[len(days)-1].Day
	prefix := PartPrefix(id, by)
	stored, err := s.Store.UsagePrefixed(ctx, prefix, from, to)
	if err != nil {
		return nil, serviceStoreErr(err, "usage breakdown of key "+id)
	}
	parts := map[string]bool{}
	for pid := range stored {
		parts[pid] = true
	}
	if p, ok := s.Pending.(interface{ PendingPartIDs(prefix string) []string }); ok {
		for _, pid := range p.PendingPartIDs(prefix) {
			parts[pid] = true
		}
	}
	index := make(map[time.Time]int, len(days))
	for i := range days {
		days[i].By = map[string]int64{}
		index[days[i].Day] = i
	}
	for pid := range parts {
		counts, err := s.usageCounts(ctx, pid, from, to)
		if err != nil {
			return nil, err
		}
		name := strings.TrimPrefix(pid, prefix)
		for d, n := range counts {
			if i, ok := index[d]; ok && n != 0 {
				days[i].By[name] += n
			}
		}
	}
	return days, nil
}

func startOfDayUTC(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// LicenseStatus reports the licence limit and the keys active now (the
// method cannot be called License: that is the field).
func (s *Service) LicenseStatus(ctx context.Context, a Actor) (LicenseInfo, error) {
	if err := s.mayManage(a); err != nil {
		return LicenseInfo{}, err
	}
	n, err := s.Store.CountActive(ctx, s.Clock())
	if err != nil {
		return LicenseInfo{}, serviceStoreErr(err, "active keys")
	}
	return LicenseInfo{Limit: s.License, InUse: n}, nil
}

// Audit returns audit events, newest first, and the next cursor. keys:self
// may read only the events of one of its own keys (f.KeyID required).
func (s *Service) Audit(ctx context.Context, a Actor, f AuditFilter) ([]AuditEvent, string, error) {
	if err := s.mayManage(a); err != nil {
		return nil, "", err
	}
	if !a.admin() {
		if f.KeyID == "" {
			return nil, "", forbiddenf("keys:self may read the audit log only of its own keys; give ?key=<id>")
		}
		if _, err := s.Get(ctx, a, f.KeyID); err != nil {
			return nil, "", err
		}
	}
	if f.Limit < 0 || f.Limit > MaxPageSize {
		return nil, "", invalidf("limit must be between 1 and %d, got %d", MaxPageSize, f.Limit)
	}
	events, next, err := s.Store.ListAudit(ctx, f)
	if err != nil {
		return nil, "", cursorErr(err, f.Cursor, "audit log")
	}
	return events, next, nil
}

// usageRange applies the defaults of a usage range (to: today, from: the
// 30 days up to to), truncates both to UTC days and checks the range.
func (s *Service) usageRange(from, to time.Time) (time.Time, time.Time, error) {
	if to.IsZero() {
		to = startOfDayUTC(s.Clock())
	}
	if from.IsZero() {
		from = to.AddDate(0, 0, -(defaultUsageDays - 1))
	}
	from, to = startOfDayUTC(from), startOfDayUTC(to)
	if from.After(to) {
		return from, to, invalidf("from %s is after to %s", from.Format(time.DateOnly), to.Format(time.DateOnly))
	}
	if to.Sub(from) >= maxUsageDays*24*time.Hour {
		return from, to, invalidf("the range %s to %s is longer than %d days", from.Format(time.DateOnly), to.Format(time.DateOnly), maxUsageDays)
	}
	return from, to, nil
}
