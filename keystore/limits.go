package keystore

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Decision codes of a rejected request.
const (
	CodeRateLimited   = "rate_limited"
	CodeQuotaExceeded = "quota_exceeded"
)

// Quota periods.
const (
	PeriodDay   = "day"
	PeriodMonth = "month"
)

// Limiter defaults.
const (
	DefaultQuotaRefresh = 5 * time.Second
	DefaultStoreTimeout = 2 * time.Second
	DefaultIdleAfter    = 5 * time.Minute
)

// deadTAT marks an entry reclaimed by Sweep; Admit then makes a new one.
const deadTAT = math.MinInt64

// LimiterOptions configure a Limiter. The zero value enforces each key's own
// rate only.
type LimiterOptions struct {
	// Store is read for the stored usage total of a key with a quota. Nil:
	// quotas count only this instance's requests.
	Store UsageReader
	// Meter supplies this instance's counts, flushed or not. It should be
	// the Meter that counts the requests this Limiter admits.
	Meter *Meter
	// DefaultRate applies to keys without a rate of their own.
	DefaultRate *Rate
	// DefaultQuota applies to keys without a quota of their own.
	DefaultQuota *Quota
	// QuotaRefresh is how often a key's stored total is read again, to see
	// other instances' usage (this instance's own is tracked exactly
	// in between). Default DefaultQuotaRefresh.
	QuotaRefresh time.Duration
	// StoreTimeout bounds one read of a stored total. Default
	// DefaultStoreTimeout.
	StoreTimeout time.Duration
	// IdleAfter is how long a key must go unseen, with its rate budget full
	// again, before Sweep forgets it. Default DefaultIdleAfter.
	IdleAfter time.Duration
	// Now is the clock of Run's sweeps. Default time.Now.
	Now func() time.Time
	// Logger receives store read failures (with key ids, never keys or
	// digests). Default: no logging.
	Logger *zap.Logger
}

// Limiter enforces per-key rate limits and quotas (docs/design.md §1 step 6, §2
// Limits). It implements Admitter.
//
// Rate limits use GCRA (a token bucket without a refill timer): a key with
// Rate{Limit: n, Per: p} may send a burst of n requests, then one every p/n.
// They are enforced per instance, so N instances behind a load balancer
// allow up to N times the rate in total.
//
// Quotas count requests per UTC calendar day or month. A key's usage is its
// stored total for the period (read from the Store at most every
// QuotaRefresh, in the background after the first read) plus what this
// instance has committed since that read plus what it counted and has not
// flushed. This instance's own requests are therefore always counted
// exactly; other instances' requests are seen after they flush and this
// instance re-reads, so N instances may overshoot a quota by what the others
// admit in one flush interval plus one QuotaRefresh. Requests admitted
// concurrently on one instance, between Admit and Meter.Count, may also pass
// the last unit of a quota together.
//
// A read of the stored total is matched with this instance's counts (see
// Limiter.read), so each of its requests counts exactly once: a read that a
// flush overlapped waits for the flush and reads again. While a batch whose
// flush failed is pending (the store may have committed it before the
// error), a refresh keeps the last exact total, as a new read might or
// might not include the batch; a first read of a period then counts the
// batch as not stored, erring high until the next flush resolves it.
//
// When the store cannot be read, the last total read for the period is
// kept (this instance's own usage since is still exact). With no total read
// yet for the period, the quota counts only what this instance committed and
// counted in the period: the key keeps working within its quota as seen
// from here rather than failing, and the read is retried every QuotaRefresh.
//
// Admit never consumes anything for a request it rejects: quotas are only
// read (the Meter counts admitted requests), and the rate budget is taken
// only when both checks pass.
//
// Memory: one entry per key seen with a limit; Sweep (run by Run) drops
// entries idle for IdleAfter whose rate budget is full again, so nothing is
// lost by forgetting them.
type Limiter struct {
	store        UsageReader
	meter        *Meter
	defaultRate  *Rate
	defaultQuota *Quota
	refresh      time.Duration
	timeout      time.Duration
	idle         time.Duration
	now          func() time.Time
	logger       *zap.Logger

	keys      sync.Map // key id → *limitEntry
	refreshes sync.WaitGroup
}

// NewLimiter returns a Limiter configured by opts.
func NewLimiter(opts LimiterOptions) *Limiter {
	l := &Limiter{
		store:        opts.Store,
		meter:        opts.Meter,
		defaultRate:  validRate(opts.DefaultRate),
		defaultQuota: validQuota(opts.DefaultQuota),
		refresh:      opts.QuotaRefresh,
		timeout:      opts.StoreTimeout,
		idle:         opts.IdleAfter,
		now:          opts.Now,
		logger:       opts.Logger,
	}
	if l.refresh <= 0 {
		l.refresh = DefaultQuotaRefresh
	}
	if l.timeout <= 0 {
		l.timeout = DefaultStoreTimeout
	}
	if l.idle <= 0 {
		l.idle = DefaultIdleAfter
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.logger == nil {
		l.logger = zap.NewNop()
	}
	return l
}

// validRate returns r if it limits anything, else nil. A limit or period of
// zero means "not set" (the admin API accepts only positive values).
func validRate(r *Rate) *Rate {
	if r == nil || r.Limit <= 0 || r.Per <= 0 {
		return nil
	}
	return r
}

// validQuota returns q if it limits anything, else nil (see validRate; an
// unknown period is treated as not set, as the admin API rejects it).
func validQuota(q *Quota) *Quota {
	if q == nil || q.Limit <= 0 || (q.Period != PeriodDay && q.Period != PeriodMonth) {
		return nil
	}
	return q
}

type limitEntry struct {
	tat  atomic.Int64 // GCRA theoretical arrival time, unix ns; deadTAT once swept
	seen atomic.Int64 // unix seconds of the latest Admit

	quota      atomic.Pointer[quotaSnap]
	refreshing atomic.Bool // a background read is under way
	readMu     sync.Mutex  // one synchronous read per key at a time

	me *meterEntry // nil without a Meter
}

// quotaSnap is one read of a stored total. Immutable once published.
type quotaSnap struct {
	month    bool   // period kind
	period   uint64 // day or month index
	startDay uint64 // day index of start
	start    int64  // unix ns of the period's first instant
	next     int64  // unix ns of the next period's first instant
	at       int64  // unix ns of the read (or failed attempt)
	known    bool   // stored and base are from a successful read
	exact    bool   // and the read was settled (see Limiter.read)
	stored   int64  // stored total of the period
	base     int64  // this instance's committed count of the period before the read
}

// Admit decides whether k may make a request at now. A key without limits
// (and no defaults configured) costs a few comparisons; otherwise one map
// read, and no allocation after the key's first request.
func (l *Limiter) Admit(k *Key, now time.Time) Decision {
	return l.AdmitDefaults(k, now, nil, nil)
}

// AdmitDefaults is Admit with the caller's default limits: defRate and
// defQuota, where not nil, replace the Limiter's DefaultRate and
// DefaultQuota for keys without limits of their own. A Limiter outlives
// config reloads, so each config passes its own defaults: a reload that
// changes them takes effect at once, and a config whose load fails never
// changes the running one's.
func (l *Limiter) AdmitDefaults(k *Key, now time.Time, defRate *Rate, defQuota *Quota) Decision {
	return l.admitKey(k.ID, k.Rate, k.Quota, now, defRate, defQuota)
}

// admitKey applies a key's own rate and quota, or the defaults.
func (l *Limiter) admitKey(id string, rate *Rate, quota *Quota, now time.Time, defRate *Rate, defQuota *Quota) Decision {
	rate, quota = l.keyLimits(rate, quota, defRate, defQuota)
	return l.admitID(id, rate, quota, now)
}

// keyLimits are the rate and quota that apply to a key with rate and
// quota of its own (either may be nil): its own, else the handler's
// defaults, else the Limiter's.
func (l *Limiter) keyLimits(rate *Rate, quota *Quota, defRate *Rate, defQuota *Quota) (*Rate, *Quota) {
	rate, quota = validRate(rate), validQuota(quota)
	if rate == nil {
		rate = validRate(defRate)
		if rate == nil {
			rate = l.defaultRate
		}
	}
	if quota == nil {
		quota = validQuota(defQuota)
		if quota == nil {
			quota = l.defaultQuota
		}
	}
	return rate, quota
}

// admitID applies rate and quota to the usage counted under id.
func (l *Limiter) admitID(id string, rate *Rate, quota *Quota, now time.Time) Decision {
	d, _ := l.admitVia(nil, id, rate, quota, now)
	return d
}

// admitVia is admitID trying e first, an entry id had before (nil: none);
// it returns the entry it used, to be tried first next time. Sweep may
// have dropped e meanwhile: a dropped entry holds deadTAT, and the live
// one is then found in the map.
func (l *Limiter) admitVia(e *limitEntry, id string, rate *Rate, quota *Quota, now time.Time) (Decision, *limitEntry) {
	if rate == nil && quota == nil {
		return Decision{Allowed: true}, e
	}
	if e != nil && e.tat.Load() != deadTAT {
		if d, dead := l.admit(e, id, rate, quota, now); !dead {
			return d, e
		}
	}
	for {
		e = l.entry(id)
		d, dead := l.admit(e, id, rate, quota, now)
		if !dead {
			return d, e
		}
		l.keys.CompareAndDelete(id, e)
	}
}

// AdmitPrincipal is AdmitDefaults for an authenticated key, with its
// user's limits on top: both must admit the request. The user's rate and
// quota are kept under p.UserUsageID(), which the caller must count (Meter)
// with every request it admits. A request the key's limits refuse gives
// back the user's rate budget, so a refused request never uses any.
func (l *Limiter) AdmitPrincipal(p *Principal, now time.Time, defRate *Rate, defQuota *Quota) Decision {
	h := p.hotEntries().forLimiter(l)
	was := h
	d := l.admitPrincipal(p, &h, now, defRate, defQuota)
	if h != was {
		p.rememberHot(h)
	}
	return d
}

// admitPrincipal is AdmitPrincipal with p's limiter entries in h, which it
// updates to the entries it used.
func (l *Limiter) admitPrincipal(p *Principal, h *hotEntries, now time.Time, defRate *Rate, defQuota *Quota) Decision {
	pr := p.profile
	rate, quota := l.keyLimits(pr.rate, pr.quota, defRate, defQuota)
	u := pr.userLimits
	if u.Rate == nil && u.Quota == nil {
		var d Decision
		d, h.limitKey = l.admitVia(h.limitKey, p.ID(), rate, quota, now)
		return d
	}
	var ud, kd Decision
	ud, h.limitUser = l.admitVia(h.limitUser, pr.userUsageID, u.Rate, u.Quota, now)
	if !ud.Allowed {
		return ud
	}
	kd, h.limitKey = l.admitVia(h.limitKey, p.ID(), rate, quota, now)
	if !kd.Allowed {
		if u.Rate != nil {
			l.giveBack(pr.userUsageID, u.Rate)
		}
		return kd
	}
	// The RateLimit-* headers describe the tighter of the two.
	if kd.Limited && kd.Remaining < ud.Remaining {
		return kd
	}
	return ud
}

// giveBack returns one request of rate's budget taken under id.
func (l *Limiter) giveBack(id string, rate *Rate) {
	v, ok := l.keys.Load(id)
	if !ok {
		return
	}
	e := v.(*limitEntry)
	t := max(int64(rate.Per)/rate.Limit, 1)
	for {
		old := e.tat.Load()
		if old == deadTAT || e.tat.CompareAndSwap(old, old-t) {
			return
		}
	}
}

func (l *Limiter) entry(keyID string) *limitEntry {
	if v, ok := l.keys.Load(keyID); ok {
		return v.(*limitEntry)
	}
	e := new(limitEntry)
	if l.meter != nil {
		e.me = l.meter.pin(keyID)
	}
	v, loaded := l.keys.LoadOrStore(keyID, e)
	if loaded && e.me != nil {
		l.meter.unpin(e.me)
	}
	return v.(*limitEntry)
}

// admit applies the limits with entry e; dead reports that Sweep reclaimed
// e meanwhile and the caller must retry with a new entry.
func (l *Limiter) admit(e *limitEntry, keyID string, rate *Rate, quota *Quota, now time.Time) (d Decision, dead bool) {
	if s := now.Unix(); e.seen.Load() < s {
		e.seen.Store(s)
	}
	d.Allowed = true
	if quota != nil {
		used, reset := l.quotaUsed(e, keyID, quota, now)
		if used >= quota.Limit {
			return Decision{Code: CodeQuotaExceeded, RetryAfter: reset,
				Limited: true, Limit: quota.Limit, Reset: reset}, false
		}
		d.Limited, d.Limit, d.Remaining, d.Reset = true, quota.Limit, quota.Limit-used-1, reset
	}
	if rate == nil {
		return d, false
	}
	// GCRA with emission interval t and burst window b = n*t <= Per:
	// a request is allowed if, after it, the theoretical arrival time is
	// at most b ahead of now.
	t := max(int64(rate.Per)/rate.Limit, 1)
	b := t * rate.Limit
	nowNs := now.UnixNano()
	for {
		old := e.tat.Load()
		if old == deadTAT {
			return Decision{}, true
		}
		tat := max(old, nowNs) + t
		if ahead := tat - nowNs; ahead > b {
			wait := time.Duration(ahead - b)
			return Decision{Code: CodeRateLimited, RetryAfter: wait,
				Limited: true, Limit: rate.Limit, Reset: wait}, false
		}
		if !e.tat.CompareAndSwap(old, tat) {
			continue
		}
		ahead := tat - nowNs
		if rem := (b - ahead) / t; !d.Limited || rem < d.Remaining {
			d.Limited, d.Limit, d.Remaining, d.Reset = true, rate.Limit, rem, time.Duration(ahead)
		}
		return d, false
	}
}

// quotaPeriod returns the period of now: its index (UTC days or months since
// the epoch), its first instant and the first instant of the next period.
func quotaPeriod(month bool, now time.Time) (idx uint64, start, next time.Time) {
	if month {
		y, m, _ := now.UTC().Date()
		start = time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
		return monthIndex(start), start, start.AddDate(0, 1, 0)
	}
	day := dayIndex(now)
	return day, dayTime(day), dayTime(day + 1)
}

// quotaUsed returns the requests of the key in the current period and the
// time until the next one.
func (l *Limiter) quotaUsed(e *limitEntry, keyID string, q *Quota, now time.Time) (int64, time.Duration) {
	month := q.Period == PeriodMonth
	nowNs := now.UnixNano()
	s := e.quota.Load()
	switch {
	case s == nil || s.month != month || nowNs < s.start || nowNs >= s.next:
		s = l.readSync(e, keyID, month, now)
	case l.store != nil && nowNs-s.at >= int64(l.refresh) && e.refreshing.CompareAndSwap(false, true):
		l.readAsync(e, keyID, s, now)
	}
	used := s.stored
	if me := e.me; me != nil {
		// One consistent view: each of this instance's requests is
		// either counted locally or committed, never both nor neither.
		local, committed := me.own(s.startDay, month, s.period)
		used += local + max(committed-s.base, 0)
	}
	return used, time.Duration(s.next - nowNs)
}

// newSnap returns an unread quotaSnap for the period of now.
func newSnap(month bool, now time.Time) *quotaSnap {
	idx, start, next := quotaPeriod(month, now)
	return &quotaSnap{month: month, period: idx, startDay: dayIndex(start),
		start: start.UnixNano(), next: next.UnixNano(), at: now.UnixNano()}
}

// readSync reads the stored total of a period not read before; concurrent
// requests of the key wait for one read.
func (l *Limiter) readSync(e *limitEntry, keyID string, month bool, now time.Time) *quotaSnap {
	e.readMu.Lock()
	defer e.readMu.Unlock()
	s := newSnap(month, now)
	if c := e.quota.Load(); c != nil && c.month == month && c.period >= s.period {
		// Read meanwhile, or this request was stamped just before a
		// period change another one has already crossed: keep the newer.
		return c
	}
	if l.store != nil {
		if err := l.read(e, keyID, s); err != nil {
			// No total for this period yet: count this instance's own
			// requests only (see Limiter) and retry after QuotaRefresh.
			l.logger.Warn("reading quota usage failed; counting this instance's requests only",
				zap.String("key_id", keyID), zap.Error(err))
		}
	}
	e.quota.Store(s)
	return s
}

// readAsync re-reads a stored total in the background; the request goes on
// with the previous one.
func (l *Limiter) readAsync(e *limitEntry, keyID string, old *quotaSnap, now time.Time) {
	l.refreshes.Add(1)
	go func() {
		defer l.refreshes.Done()
		defer e.refreshing.Store(false)
		s := *old
		s.at = now.UnixNano()
		if err := l.read(e, keyID, &s); err != nil {
			// Keep the last known total (this instance's usage since is
			// still exact) and try again after QuotaRefresh.
			l.logger.Warn("refreshing quota usage failed; using the last known total",
				zap.String("key_id", keyID), zap.Error(err))
		}
		if s.known && !s.exact && old.exact {
			// An unsettled read would count a batch of unknown outcome
			// twice if the store has it; the last settled total is
			// exact for this instance, so keep it until the batch is
			// resolved (by the next Flush) and read again then.
			s.known, s.exact, s.stored, s.base = old.known, old.exact, old.stored, old.base
		}
		e.quota.CompareAndSwap(old, &s)
	}()
}

// read fills s with the stored total of [start, next) and this instance's
// committed count of the period as of that total (base), so that the usage
// is stored + (committed - base) + local, and reports in s.exact whether
// that sum counts each of this instance's requests exactly once.
//
// It is exact when the read is settled: no batch with counts of the period
// was in flight or of unknown outcome (failed: the store may have committed
// it) when the read started, and none was collected or committed during it.
// Otherwise the store may or may not include such a batch that the sum also
// counts as held or as committed since base. When a Flush overlapped the
// read, read waits for it and reads again; when a failed batch is still
// pending, or StoreTimeout runs out, it keeps the unsettled total, which
// errs high (a quota may refuse early), never low.
func (l *Limiter) read(e *limitEntry, keyID string, s *quotaSnap) error {
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	start, next := time.Unix(0, s.start).UTC(), time.Unix(0, s.next).UTC()
	for attempt := 1; ; attempt++ {
		var before readState
		if e.me != nil {
			before = e.me.readState(s.startDay, math.MaxUint64, s.month, s.period)
		}
		days, err := l.store.Usage(ctx, keyID, start, next.Add(-24*time.Hour))
		if err != nil {
			return fmt.Errorf("reading usage of key %s: %w", keyID, err)
		}
		var total int64
		for _, d := range days {
			if !d.Day.Before(start) && d.Day.Before(next) {
				total += d.Requests
			}
		}
		exact := true
		if e.me != nil {
			exact = settled(before, e.me.readState(s.startDay, math.MaxUint64, s.month, s.period))
		}
		if exact || attempt >= maxReadAttempts || !l.meter.readAgain(ctx, e.me, s.startDay, math.MaxUint64) {
			s.known, s.exact, s.stored, s.base = true, exact, total, before.committed
			return nil
		}
	}
}

// Sweep forgets keys not seen for IdleAfter whose rate budget is full again
// at now, and returns how many it dropped. Run calls it periodically.
func (l *Limiter) Sweep(now time.Time) int {
	nowNs, idleBefore := now.UnixNano(), now.Add(-l.idle).Unix()
	n := 0
	l.keys.Range(func(k, v any) bool {
		e := v.(*limitEntry)
		if e.seen.Load() > idleBefore || e.refreshing.Load() {
			return true
		}
		if tat := e.tat.Load(); tat != deadTAT && tat <= nowNs && e.tat.CompareAndSwap(tat, deadTAT) {
			l.keys.CompareAndDelete(k, e)
			if e.me != nil {
				// The Meter may now drop its entry once idle and flushed;
				// the key's next limiter state pins the entry then in use.
				l.meter.unpin(e.me)
			}
			n++
		}
		return true
	})
	return n
}

// Len returns the number of keys the Limiter currently holds state for.
func (l *Limiter) Len() int {
	n := 0
	l.keys.Range(func(any, any) bool { n++; return true })
	return n
}

// Run sweeps every interval (IdleAfter if interval <= 0) until ctx is done.
func (l *Limiter) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = l.idle
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.Sweep(l.now())
		}
	}
}

// Wait waits for background reads of stored totals to finish (each is
// bounded by StoreTimeout). Call it after the last Admit, before closing
// the store.
func (l *Limiter) Wait() { l.refreshes.Wait() }

// Decision is the outcome of a limits check.
type Decision struct {
	Allowed bool
	// Code is "rate_limited" or "quota_exceeded" when not allowed.
	Code string
	// RetryAfter is how long until a retry can succeed (not allowed only).
	RetryAfter time.Duration
	// Limited reports whether any limit applies; then Limit, Remaining and
	// Reset fill the RateLimit-* response headers (the tightest limit).
	Limited   bool
	Limit     int64
	Remaining int64
	Reset     time.Duration
}
