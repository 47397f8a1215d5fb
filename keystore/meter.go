package keystore

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// DefaultFlushInterval is how often Meter.Run flushes when given no interval.
const DefaultFlushInterval = 10 * time.Second

// A counter word packs a period index (UTC days or months since the epoch)
// into its high bits and a count into its low countBits bits, so that "is
// this the right day" and "add one" are a single compare-and-swap: a count
// can never land on the wrong day, whatever the interleaving.
const (
	countBits = 40
	countMask = 1<<countBits - 1 // 1.1e12 requests per key per day (per flush)
)

const secondsPerDay = 24 * 60 * 60

// dayIndex is the number of whole UTC days since the Unix epoch (0 before it).
func dayIndex(t time.Time) uint64 {
	s := t.Unix()
	if s < 0 {
		return 0
	}
	return uint64(s / secondsPerDay)
}

// dayTime is midnight UTC of a day index.
func dayTime(day uint64) time.Time { return time.Unix(int64(day)*secondsPerDay, 0).UTC() }

// monthIndex is year*12 + month-1 of t in UTC.
func monthIndex(t time.Time) uint64 {
	y, m, _ := t.UTC().Date()
	if y < 0 {
		return 0
	}
	return uint64(y)*12 + uint64(m-1)
}

type dayCount struct {
	day uint64
	n   int64
}

// addDay adds n to day in list, appending a new element when needed.
func addDay(list []dayCount, day uint64, n int64) []dayCount {
	for i := range list {
		if list[i].day == day {
			list[i].n += n
			return list
		}
	}
	return append(list, dayCount{day, n})
}

// Meter counts admitted requests per key and UTC day in memory and writes
// them to the store in batches (docs/design.md §1 step 7, §5). It implements
// UsageCounter and PendingUsage.
//
// Count is lock-free: after a key's first request it is one sync.Map read
// and one compare-and-swap on that key's own counter, with no allocation and
// nothing shared with other keys.
//
// Flush moves the pending counts into batches (one for up to MaxBatch
// deltas) with a random id each and hands each to Store.AddUsage in a
// single call. When that call fails the counts stay
// pending (LocalCount and PendingUsage still report them) and the same batch,
// same id and same deltas, is sent again first by the next Flush: a batch
// whose commit succeeded but whose acknowledgement was lost is then skipped by
// the store, so no request is counted twice and none is lost.
//
// Each key counted holds one small entry while it is in use. Sweep (run by
// Run after each successful flush) drops the entries of keys not counted for
// IdleAfter whose counts are all acknowledged by the store and that no
// Limiter state refers to (see pin), so memory follows the keys in use, not
// every key ever seen. A key that comes back gets a new entry: nothing it
// counted is pending any more, so nothing is lost or counted twice.
//
// A Flush sends at most MaxBatch deltas per AddUsage call, in as many calls
// as needed, so its buffers are bounded whatever the number of keys.
//
// A Meter is shared by every config that uses its store and outlives config
// reloads: call Run once in a goroutine, Flush on reload, and Close on final
// shutdown.
type Meter struct {
	store  UsageWriter
	logger *zap.Logger

	keys sync.Map // key id → *meterEntry

	flushMu sync.Mutex
	retry   *usageBatch // failed batch, resent unchanged by the next Flush
	// flushing is closed when the running Flush returns; nil when none
	// runs. Reads of the store wait on it to see a settled state.
	flushing atomic.Pointer[chan struct{}]

	closeOnce sync.Once
	closed    chan struct{}
	onFlush   func(time.Duration, error)

	idle     time.Duration
	maxBatch int
	now      func() time.Time
	round    atomic.Uint64 // of collect: entries visited by the running Flush
}

// MeterOptions configure a Meter.
type MeterOptions struct {
	// Logger receives flush failures from Run and Close. It never receives
	// a key or a digest, only key ids. Default: no logging.
	Logger *zap.Logger
	// OnFlush, if set, observes every flush: its duration and its error
	// (metrics).
	OnFlush func(d time.Duration, err error)
	// IdleAfter is how long a key must go uncounted before Sweep drops its
	// entry (once its counts are acknowledged). Default DefaultMeterIdle.
	IdleAfter time.Duration
	// MaxBatch is the most deltas (one per key and day) sent in one
	// AddUsage call. Default DefaultMaxBatch.
	MaxBatch int
	// Now is the clock of Run's sweeps; nil means time.Now. Count takes
	// its time from its caller.
	Now func() time.Time
}

const (
	// DefaultMeterIdle is MeterOptions.IdleAfter's default.
	DefaultMeterIdle = 5 * time.Minute
	// DefaultMaxBatch is MeterOptions.MaxBatch's default.
	DefaultMaxBatch = 10_000
)

// NewMeter returns a Meter that flushes to store, which must not be nil.
// Every time it needs comes from Count's now, so it has no clock of its own.
func NewMeter(store UsageWriter, opts MeterOptions) *Meter {
	logger := opts.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	m := &Meter{store: store, logger: logger, onFlush: opts.OnFlush, closed: make(chan struct{}),
		idle: opts.IdleAfter, maxBatch: opts.MaxBatch, now: opts.Now}
	if m.idle <= 0 {
		m.idle = DefaultMeterIdle
	}
	if m.maxBatch <= 0 {
		m.maxBatch = DefaultMaxBatch
	}
	if m.now == nil {
		m.now = time.Now
	}
	return m
}

// meterEntry holds the counts of one key.
type meterEntry struct {
	// slots hold the unflushed counts of the two most recent days, as
	// day<<countBits|count words indexed by day&1, so the days either side
	// of midnight never share a word.
	slots [2]atomic.Uint64
	last  atomic.Int64 // unix seconds of the latest counted request

	// extra is set whenever spill or held may be non-empty, or counts are
	// being moved out of slots; readers then take mu for a consistent view.
	extra atomic.Bool
	mu    sync.Mutex
	spill []dayCount // unflushed counts of days no slot holds any more
	held  []dayCount // counts in a batch the store has not acknowledged
	// gen is bumped (under mu) whenever counts move into held (collect)
	// or out of it into the committed words (commit), acks only by the
	// latter: a read of the store that sees neither change nor held
	// counts knows exactly which of this instance's counts it includes.
	gen, acks uint64

	// dead is set (under mu) when Sweep has dropped the entry: a count
	// that reaches it then goes to the key's new entry. Sweep only drops
	// an entry with zeroed slots, so a count can only reach a dead entry
	// through addSlow, which checks dead.
	dead bool
	// pins counts the Limiter states that use this entry; Sweep keeps a
	// pinned entry (the Limiter reads its committed counts).
	pins int
	// round is the last Flush round (Meter.round) that visited the entry.
	round atomic.Uint64
	// parts links a key's entry to the entries of its parts (see
	// countPart); replaced whole, under mu.
	parts atomic.Pointer[[]meterPart]

	// Counts this instance has committed to the store, per current period:
	// dayIndex<<countBits|count and monthIndex<<countBits|count. Written
	// only by commit, under mu and together with the release of the held
	// counts; the Limiter reads them to keep quota totals exact between
	// its reads of the store.
	committedDay   atomic.Uint64
	committedMonth atomic.Uint64
}

// Count records one admitted request of keyID at now, on now's UTC day. The
// Tally it returns counts the request's parts (area, answer class).
func (m *Meter) Count(keyID string, now time.Time) Tally {
	for {
		if e := m.entry(keyID); e.count(now) {
			return Tally{m: m, e: e, keyID: keyID, now: now}
		}
		// The entry was dropped by Sweep between the map read and the
		// count; the next read finds a new one.
	}
}

// count counts one request in e; false if e is dead (and nothing counted).
func (e *meterEntry) count(now time.Time) bool {
	if s := now.Unix(); s > e.last.Load() {
		for {
			old := e.last.Load()
			if s <= old || e.last.CompareAndSwap(old, s) {
				break
			}
		}
	}
	day := dayIndex(now)
	slot := &e.slots[day&1]
	for {
		w := slot.Load()
		// A zero word (a new or swept entry) always takes the slow
		// path, even on day 0, so a dead entry is never counted into.
		if w>>countBits != day || w&countMask == countMask || w == 0 {
			break
		}
		if slot.CompareAndSwap(w, w+1) {
			return true
		}
	}
	return e.addSlow(day)
}

// addSlow counts a request whose day does not own its slot yet (the first
// request of a day), or is older than the slot's day, or would overflow.
// It reports false, counting nothing, if e is dead.
func (e *meterEntry) addSlow(day uint64) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dead {
		return false
	}
	e.extra.Store(true) // before any count leaves a slot
	slot := &e.slots[day&1]
	for {
		w := slot.Load()
		wd, n := w>>countBits, int64(w&countMask)
		switch {
		case wd == day && n < countMask:
			if !slot.CompareAndSwap(w, w+1) {
				continue
			}
		case wd < day:
			// A new day takes the slot; an unflushed count of an
			// older day (flushing failed for a day) moves to spill.
			if !slot.CompareAndSwap(w, day<<countBits|1) {
				continue
			}
			if n > 0 {
				e.spill = addDay(e.spill, wd, n)
			}
		default:
			// The slot holds a later day (a request stamped before
			// midnight counted after one stamped after it), or is full.
			e.spill = addDay(e.spill, day, 1)
		}
		e.extra.Store(len(e.spill)+len(e.held) > 0)
		return true
	}
}

func (m *Meter) entry(keyID string) *meterEntry {
	if v, ok := m.keys.Load(keyID); ok {
		return v.(*meterEntry)
	}
	v, _ := m.keys.LoadOrStore(strings.Clone(keyID), new(meterEntry))
	return v.(*meterEntry)
}

// pin returns keyID's entry and keeps Sweep from dropping it until unpin:
// a Limiter reads the committed counts of the entry it holds, and they must
// stay those of the entry Count counts into.
func (m *Meter) pin(keyID string) *meterEntry {
	for {
		e := m.entry(keyID)
		e.mu.Lock()
		if !e.dead {
			e.pins++
			e.mu.Unlock()
			return e
		}
		e.mu.Unlock()
	}
}

// unpin releases a pin taken by pin.
func (m *Meter) unpin(e *meterEntry) {
	e.mu.Lock()
	e.pins--
	e.mu.Unlock()
}

// Sweep drops the entries of keys not counted since now - IdleAfter whose
// counts are all acknowledged by the store (none unflushed, in flight or in
// a failed batch) and that no Limiter state pins. It returns how many it
// dropped. Run calls it after each successful flush.
func (m *Meter) Sweep(now time.Time) int {
	m.flushMu.Lock()
	defer m.flushMu.Unlock()
	idleBefore := now.Add(-m.idle).Unix()
	n := 0
	m.keys.Range(func(k, v any) bool {
		e := v.(*meterEntry)
		if e.last.Load() >= idleBefore {
			return true
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.dead || e.pins > 0 || len(e.held)+len(e.spill) > 0 {
			return true
		}
		// Zero the slots if they count nothing. Count's lock-free path
		// then cannot match their day and goes through addSlow, which
		// waits for e.mu and sees dead. A slot with a count (one that
		// came in since the last flush) keeps the entry.
		for i := range e.slots {
			w := e.slots[i].Load()
			if w&countMask != 0 || !e.slots[i].CompareAndSwap(w, 0) {
				return true
			}
		}
		e.dead = true
		m.keys.CompareAndDelete(k, e)
		n++
		return true
	})
	return n
}

// Len returns the number of keys the Meter holds an entry for.
func (m *Meter) Len() int {
	n := 0
	m.keys.Range(func(any, any) bool { n++; return true })
	return n
}

func (m *Meter) lookup(keyID string) *meterEntry {
	if v, ok := m.keys.Load(keyID); ok {
		return v.(*meterEntry)
	}
	return nil
}

// LocalCount returns the requests of keyID counted by this instance on or
// after periodStart's UTC day and not yet acknowledged by the store
// (unflushed, in flight, or in a failed batch). Quota checks add it to the
// stored total.
func (m *Meter) LocalCount(keyID string, periodStart time.Time) int64 {
	e := m.lookup(keyID)
	if e == nil {
		return 0
	}
	return e.local(dayIndex(periodStart))
}

func (e *meterEntry) local(from uint64) int64 {
	n := e.slotsSince(from)
	if !e.extra.Load() {
		// Read after the slots: had a flush moved counts out of them
		// before that read, extra would already be set.
		return n
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.localLocked(from)
}

// localLocked is local with e.mu held.
func (e *meterEntry) localLocked(from uint64) int64 {
	n := e.slotsSince(from)
	for _, l := range [2][]dayCount{e.spill, e.held} {
		for _, dc := range l {
			if dc.day >= from {
				n += dc.n
			}
		}
	}
	return n
}

// heldIn reports, with e.mu held, whether counts of days in [from, to] are
// in a batch whose outcome is unknown: in flight, or failed (the store may
// or may not have committed it).
func (e *meterEntry) heldIn(from, to uint64) bool {
	for _, dc := range e.held {
		if dc.day >= from && dc.day <= to && dc.n > 0 {
			return true
		}
	}
	return false
}

// readState is what a read of the store compares before and after itself.
type readState struct {
	gen, acks uint64
	unsure    bool  // counts of the days read are held (outcome unknown)
	committed int64 // committed count of the period asked for
}

// readState returns e's state for a store read of days [from, to]; a nil
// entry has counted nothing yet.
func (e *meterEntry) readState(from, to uint64, month bool, period uint64) readState {
	if e == nil {
		return readState{}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.readStateLocked(from, to, month, period)
}

func (e *meterEntry) readStateLocked(from, to uint64, month bool, period uint64) readState {
	return readState{gen: e.gen, acks: e.acks, unsure: e.heldIn(from, to), committed: e.committed(month, period)}
}

// settled reports whether a store read made between before and after saw
// exactly the counts of the entry committed by before: no batch of the days
// read was in flight or of unknown outcome at the start, and none was
// collected or committed during the read.
func settled(before, after readState) bool {
	return !before.unsure && before.gen == after.gen
}

// waitFlush waits for a running Flush, if any, to return. It reports false
// when ctx is done first.
func (m *Meter) waitFlush(ctx context.Context) bool {
	if p := m.flushing.Load(); p != nil {
		select {
		case <-*p:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// readAgain is called after a store read that was not settled for e's days
// [from, to]. It waits for a running Flush and reports whether reading again
// may give a settled result: not when counts of those days are still held
// with no Flush running, a failed batch that only the next Flush resolves,
// nor when ctx is done.
func (m *Meter) readAgain(ctx context.Context, e *meterEntry, from, to uint64) bool {
	if !m.waitFlush(ctx) {
		return false
	}
	return !e.readState(from, to, false, 0).unsure || m.flushing.Load() != nil
}

// maxReadAttempts bounds the store reads of one consistent read.
const maxReadAttempts = 4

// PendingUsageAfter calls read, which must read the stored usage of keyID on
// days from to to (UTC), and returns this instance's counts of keyID the
// result of read does not include, per UTC day, ascending, like
// PendingUsage; read's error is returned as is.
//
// Reading the store and then PendingUsage can miss the counts of a Flush
// that commits between the two (they are in neither), and can count a batch
// twice that the store committed but has not acknowledged yet (it is in
// both). PendingUsageAfter instead notes which of the key's counts are
// committed or held before read and after it: when a Flush of the key's
// counts overlapped the read it waits for that Flush and reads again. When a
// failed batch of those days is pending (committed or not: only the next
// Flush tells), the answer counts it as not included, so it errs high,
// never low.
func (m *Meter) PendingUsageAfter(ctx context.Context, keyID string, from, to time.Time, read func(context.Context) error) ([]UsageDelta, error) {
	fd, td := dayIndex(from), dayIndex(to)
	for attempt := 1; ; attempt++ {
		eb := m.lookup(keyID)
		before := eb.readState(fd, td, false, 0)
		if err := read(ctx); err != nil {
			return nil, err
		}
		e := m.lookup(keyID)
		if e != eb && attempt < 4*maxReadAttempts {
			// Sweep dropped the entry during the read, and the key may
			// have a new one: the states do not compare. Read again.
			continue
		}
		if e == nil {
			return nil, nil // none before either (or dropped: nothing pending)
		}
		e.mu.Lock()
		after := e.readStateLocked(fd, td, false, 0)
		// Without an acknowledgement during the read, every count the
		// read missed is still pending: an answer that errs high only by
		// held batches, of unknown outcome.
		// (Flushes committing the key's counts during every one of many
		// reads in a row would need a read slower than the flush
		// interval: then take the last answer rather than loop on.)
		bound := before.acks == after.acks &&
			(attempt >= maxReadAttempts || (after.unsure && m.flushing.Load() == nil)) ||
			attempt >= 4*maxReadAttempts
		var days []dayCount
		ok := settled(before, after) || bound
		if ok {
			days = e.pendingLocked()
		}
		e.mu.Unlock()
		if ok {
			return e.deltas(keyID, days), nil
		}
		if !m.waitFlush(ctx) {
			return nil, fmt.Errorf("reading usage of key %s consistently with its unflushed counts: %w", keyID, ctx.Err())
		}
	}
}

// own returns, as one consistent view, the counts local(from) returns and
// the count committed in period (see committed): a request is in exactly
// one of them, never in both and never in neither, even while a Flush
// commits. Lock-free and allocation-free unless counts are held or spilled.
func (e *meterEntry) own(from uint64, month bool, period uint64) (local, committed int64) {
	c := e.committed(month, period)
	n := e.slotsSince(from)
	if !e.extra.Load() {
		// A count read in a slot and committed since would have changed
		// the committed word between the two loads; a count moved out of
		// the slots before they were read was committed before extra was
		// cleared again (see local), so the second load sees it.
		if c2 := e.committed(month, period); c2 == c {
			return n, c
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.localLocked(from), e.committed(month, period)
}

func (e *meterEntry) slotsSince(from uint64) int64 {
	var n int64
	for i := range e.slots {
		if w := e.slots[i].Load(); w>>countBits >= from {
			n += int64(w & countMask)
		}
	}
	return n
}

// PendingUsage returns this instance's counts of keyID not yet acknowledged
// by the store, one delta per UTC day, ascending; nil if there are none.
// To add them to a read of the store, use PendingUsageAfter: a flush may
// commit counts between the two reads.
func (m *Meter) PendingUsage(keyID string) []UsageDelta {
	e := m.lookup(keyID)
	if e == nil {
		return nil
	}
	e.mu.Lock()
	days := e.pendingLocked()
	e.mu.Unlock()
	return e.deltas(keyID, days)
}

// pendingLocked returns the unacknowledged counts per day, e.mu held.
func (e *meterEntry) pendingLocked() []dayCount {
	var days []dayCount
	for i := range e.slots {
		w := e.slots[i].Load()
		if n := int64(w & countMask); n > 0 {
			days = addDay(days, w>>countBits, n)
		}
	}
	for _, l := range [2][]dayCount{e.spill, e.held} {
		for _, dc := range l {
			days = addDay(days, dc.day, dc.n)
		}
	}
	return days
}

// deltas turns per-day counts into deltas of keyID, ascending; nil if none.
func (e *meterEntry) deltas(keyID string, days []dayCount) []UsageDelta {
	if len(days) == 0 {
		return nil
	}
	slices.SortFunc(days, func(a, b dayCount) int { return cmp.Compare(a.day, b.day) })
	out := make([]UsageDelta, len(days))
	for i, dc := range days {
		out[i] = UsageDelta{KeyID: keyID, Day: dayTime(dc.day), Requests: dc.n, LastUsed: e.lastUsed(dc.day)}
	}
	return out
}

// lastUsed is the latest counted request, clamped into day: requests are
// stamped to the second, and a delta of an earlier day never claims a later
// time.
func (e *meterEntry) lastUsed(day uint64) time.Time {
	s := e.last.Load()
	lo := int64(day) * secondsPerDay
	s = min(max(s, lo), lo+secondsPerDay-1)
	return time.Unix(s, 0).UTC()
}

// committed returns the count this instance committed to the store in the
// period idx (a day index when month is false, else a month index); 0 when
// the word holds another period.
func (e *meterEntry) committed(month bool, idx uint64) int64 {
	w := e.committedDay.Load()
	if month {
		w = e.committedMonth.Load()
	}
	if w>>countBits != idx {
		return 0
	}
	return int64(w & countMask)
}

// bumpCommitted adds n to a committed-period word; only Flush calls it.
func bumpCommitted(w *atomic.Uint64, idx uint64, n int64) {
	old := w.Load()
	switch oi := old >> countBits; {
	case oi == idx:
		w.Store(idx<<countBits | min(old&countMask+uint64(n), countMask))
	case oi < idx:
		w.Store(idx<<countBits | min(uint64(n), countMask))
	}
	// A count of an earlier period than the word holds is of no use to
	// quota checks any more.
}

type batchItem struct {
	e     *meterEntry
	delta UsageDelta
}

// usageBatch is one AddUsage call: deltas[i] belongs to items[i].e.
type usageBatch struct {
	id     string
	items  []batchItem
	deltas []UsageDelta
}

// Flush sends this instance's pending counts to the store: first, unchanged,
// a batch that failed before, then everything counted since, in one
// AddUsage call per MaxBatch deltas. On error the counts stay
// pending and are sent again by the next Flush. Flushes are serialised.
func (m *Meter) Flush(ctx context.Context) (err error) {
	return m.FlushTo(ctx, m.store)
}

// FlushTo is Flush into another writer: at shutdown, when the store cannot
// take the counts, into a Journal. Batch ids are kept, so a batch later
// replayed from the journal is counted once even if the store had taken it.
func (m *Meter) FlushTo(ctx context.Context, w UsageWriter) (err error) {
	m.flushMu.Lock()
	defer m.flushMu.Unlock()
	done := make(chan struct{})
	m.flushing.Store(&done)
	defer func() {
		m.flushing.Store(nil)
		close(done)
	}()
	if m.onFlush != nil {
		start := time.Now()
		defer func() { m.onFlush(time.Since(start), err) }()
	}
	if b := m.retry; b != nil {
		if err := w.AddUsage(ctx, b.id, b.deltas); err != nil {
			return fmt.Errorf("adding usage batch %s again (%d deltas): %w", b.id, len(b.deltas), err)
		}
		m.retry = nil
		m.commit(b)
	}
	// One round visits every entry once, in batches of at most maxBatch
	// deltas; counts made meanwhile in entries already visited wait for
	// the next Flush, so a busy Meter cannot keep one Flush going.
	round := m.round.Add(1)
	for {
		b, more := m.collect(round)
		if b != nil {
			if err := w.AddUsage(ctx, b.id, b.deltas); err != nil {
				m.retry = b
				return fmt.Errorf("adding usage batch %s (%d deltas): %w", b.id, len(b.deltas), err)
			}
			m.commit(b)
		}
		if !more {
			return nil
		}
	}
}

// PendingTotal returns how many counted requests the store has not yet
// acknowledged, over all keys (each request once: the per-user counts of
// UserUsageID and the parts of keys are left out). It walks every key: for
// metrics scrapes, not for the request path.
func (m *Meter) PendingTotal() int64 {
	var n int64
	m.keys.Range(func(k, _ any) bool {
		if !countsAsKey(k.(string)) {
			return true
		}
		for _, d := range m.PendingUsage(k.(string)) {
			n += d.Requests
		}
		return true
	})
	return n
}

// collect moves the unflushed counts of entries not yet visited in round
// into a new batch of at most maxBatch deltas (more if one key has more
// days), holding them in the entries until commit. The batch is nil when
// there is nothing to send; more reports that entries of the round are left.
func (m *Meter) collect(round uint64) (b *usageBatch, more bool) {
	var items []batchItem
	var days []dayCount
	m.keys.Range(func(k, v any) bool {
		e := v.(*meterEntry)
		if e.round.Load() == round {
			return true
		}
		if len(items) >= m.maxBatch {
			more = true
			return false
		}
		e.round.Store(round)
		days = days[:0]
		e.mu.Lock()
		e.extra.Store(true) // before any count leaves a slot
		for i := range e.slots {
			slot := &e.slots[i]
			for {
				w := slot.Load()
				n := int64(w & countMask)
				if n == 0 {
					break
				}
				if slot.CompareAndSwap(w, w&^countMask) {
					days = addDay(days, w>>countBits, n)
					break
				}
			}
		}
		for _, dc := range e.spill {
			days = addDay(days, dc.day, dc.n)
		}
		e.spill = e.spill[:0]
		for _, dc := range days {
			e.held = addDay(e.held, dc.day, dc.n)
		}
		if len(days) > 0 {
			e.gen++
		}
		e.extra.Store(len(e.held) > 0)
		e.mu.Unlock()
		id := k.(string)
		key := countsAsKey(id)
		for _, dc := range days {
			d := UsageDelta{KeyID: id, Day: dayTime(dc.day), Requests: dc.n}
			if key {
				d.LastUsed = e.lastUsed(dc.day) // only keys have a last_used_at
			}
			items = append(items, batchItem{e: e, delta: d})
		}
		return true
	})
	if len(items) == 0 {
		return nil, more
	}
	// A stable order (key, day) keeps row locks in the same order across
	// instances flushing at the same time.
	slices.SortFunc(items, func(a, b batchItem) int {
		return cmp.Or(strings.Compare(a.delta.KeyID, b.delta.KeyID), a.delta.Day.Compare(b.delta.Day))
	})
	b = &usageBatch{id: "ub_" + rand.Text(), items: items, deltas: make([]UsageDelta, len(items))}
	for i, it := range items {
		b.deltas[i] = it.delta
	}
	return b, more
}

// commit records an acknowledged batch: for each delta, under its entry's
// mu, the committed-period words are raised and the held count is released
// together, so a view taken under mu (or validated as in own) sees every
// request exactly once.
func (m *Meter) commit(b *usageBatch) {
	for _, it := range b.items {
		e := it.e
		day := dayIndex(it.delta.Day)
		e.mu.Lock()
		bumpCommitted(&e.committedDay, day, it.delta.Requests)
		bumpCommitted(&e.committedMonth, monthIndex(it.delta.Day), it.delta.Requests)
		e.gen++
		e.acks++
		for i := range e.held {
			if e.held[i].day == day {
				e.held[i].n -= it.delta.Requests
				if e.held[i].n <= 0 {
					e.held = slices.Delete(e.held, i, i+1)
				}
				break
			}
		}
		e.extra.Store(len(e.spill)+len(e.held) > 0)
		e.mu.Unlock()
	}
}

// Run flushes every interval (DefaultFlushInterval if interval <= 0) until
// ctx is done or Close is called. Each flush gets at most interval to
// finish; failures are logged and retried on the next tick.
func (m *Meter) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultFlushInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.closed:
			return
		case <-t.C:
			fctx, cancel := context.WithTimeout(ctx, interval)
			err := m.Flush(fctx)
			cancel()
			if err != nil {
				m.logger.Warn("flushing usage counts failed; will retry", zap.Error(err))
				continue
			}
			m.Sweep(m.now())
		}
	}
}

// Close stops Run and flushes what is left, retrying until the flush
// succeeds or ctx is done; it returns the last error then. Counts made after
// Close stay in memory until another Flush.
func (m *Meter) Close(ctx context.Context) error {
	m.closeOnce.Do(func() { close(m.closed) })
	backoff := 100 * time.Millisecond
	for {
		err := m.Flush(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		m.logger.Warn("final usage flush failed; retrying", zap.Error(err))
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

var _ PendingUsage = (*Meter)(nil)
