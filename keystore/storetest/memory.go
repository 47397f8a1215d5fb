package storetest

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keygate/keygate/keystore"
)

// Memory is an in-memory keystore.Store for tests of code above the store
// (Service, admin). SetFail makes every call return an error, to simulate an
// outage. It passes the conformance suite (memory_test.go).
type Memory struct {
	mu      sync.Mutex
	keys    []*keystore.Key
	audit   []keystore.AuditEvent
	usage   map[string]map[time.Time]int64
	batches map[string]bool
	users   map[string]keystore.UserLimits
	out     outbox
	fail    error
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{usage: map[string]map[time.Time]int64{}, batches: map[string]bool{}, users: map[string]keystore.UserLimits{}}
}

func (m *Memory) SetFail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fail = err
}

func (m *Memory) find(id string) int {
	for i, k := range m.keys {
		if k.ID == id {
			return i
		}
	}
	return -1
}

func (m *Memory) digestTaken(d keystore.Digest, except string) bool {
	if d.IsZero() {
		return false
	}
	for _, k := range m.keys {
		if k.ID != except && (k.Digest == d || k.PrevDigest == d) {
			return true
		}
	}
	return false
}

// countActive counts the keys active at now, of user ("" for all users).
func (m *Memory) countActive(now time.Time, user string) int {
	n := 0
	for _, k := range m.keys {
		if (user == "" || k.User == user) && k.Status(now) == keystore.StatusActive {
			n++
		}
	}
	return n
}

func (m *Memory) CreateKey(_ context.Context, k *keystore.Key, lim keystore.CreateLimits, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	if m.find(k.ID) >= 0 || m.digestTaken(k.Digest, "") || m.digestTaken(k.PrevDigest, "") {
		return keystore.ErrConflict
	}
	if lim.MaxActive > 0 && m.countActive(now, "") >= lim.MaxActive {
		return keystore.ErrLicenseExhausted
	}
	if lim.MaxActivePerUser > 0 && m.countActive(now, k.User) >= lim.MaxActivePerUser {
		return keystore.ErrUserKeysExhausted
	}
	m.keys = append(m.keys, k.Clone())
	return nil
}

func (m *Memory) GetKey(_ context.Context, id string) (*keystore.Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	i := m.find(id)
	if i < 0 {
		return nil, keystore.ErrNotFound
	}
	return m.keys[i].Clone(), nil
}

func (m *Memory) LookupDigest(_ context.Context, d keystore.Digest) (*keystore.Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	for _, k := range m.keys {
		if k.Digest == d || (!k.PrevDigest.IsZero() && k.PrevDigest == d) {
			return k.Clone(), nil
		}
	}
	return nil, keystore.ErrNotFound
}

func (m *Memory) ListKeys(_ context.Context, f keystore.ListFilter) ([]*keystore.Key, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, "", m.fail
	}
	start := 0
	if f.Cursor != "" {
		n, err := strconv.Atoi(f.Cursor)
		if err != nil || n < 0 {
			return nil, "", fmt.Errorf("%w %q", keystore.ErrInvalidCursor, f.Cursor)
		}
		start = n
	}
	limit := keystore.PageSize(f.Limit)
	var out []*keystore.Key
	for i := start; i < len(m.keys); i++ {
		k := m.keys[i]
		if (f.User != "" && k.User != f.User) || (f.Name != "" && k.Name != f.Name) ||
			(f.CreatedBy != "" && k.CreatedBy != f.CreatedBy) ||
			(f.Status != "" && k.Status(f.Now) != f.Status) {
			continue
		}
		if len(out) == limit {
			return out, strconv.Itoa(i), nil
		}
		out = append(out, k.Clone())
	}
	return out, "", nil
}

func (m *Memory) UpdateKey(_ context.Context, id string, fn func(*keystore.Key) error) (*keystore.Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	i := m.find(id)
	if i < 0 {
		return nil, keystore.ErrNotFound
	}
	k := m.keys[i].Clone()
	if err := fn(k); err != nil {
		return nil, fmt.Errorf("updating key %s: %w", id, err)
	}
	k.ID = id
	if m.digestTaken(k.Digest, id) || m.digestTaken(k.PrevDigest, id) {
		return nil, keystore.ErrConflict
	}
	m.keys[i] = k.Clone()
	return k, nil
}

func (m *Memory) RevokeUser(_ context.Context, user string, at time.Time) ([]*keystore.Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	var out []*keystore.Key
	for _, k := range m.keys {
		if k.User == user && k.RevokedAt == nil {
			t := at
			k.RevokedAt = &t
			out = append(out, k.Clone())
		}
	}
	return out, nil
}

func (m *Memory) CountActive(_ context.Context, now time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return 0, m.fail
	}
	return m.countActive(now, ""), nil
}

func (m *Memory) AppendAudit(_ context.Context, e keystore.AuditEvent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	e.Seq = int64(len(m.audit) + 1)
	m.audit = append(m.audit, e)
	return nil
}

func (m *Memory) ListAudit(_ context.Context, f keystore.AuditFilter) ([]keystore.AuditEvent, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, "", m.fail
	}
	start := len(m.audit) - 1
	if f.Cursor != "" {
		n, err := strconv.Atoi(f.Cursor)
		if err != nil || n < 0 || n >= len(m.audit) {
			return nil, "", fmt.Errorf("%w %q", keystore.ErrInvalidCursor, f.Cursor)
		}
		start = n
	}
	limit := keystore.PageSize(f.Limit)
	var out []keystore.AuditEvent
	for i := start; i >= 0; i-- {
		e := m.audit[i]
		if f.KeyID != "" && e.KeyID != f.KeyID {
			continue
		}
		if len(out) == limit {
			return out, strconv.Itoa(i), nil
		}
		out = append(out, e)
	}
	return out, "", nil
}

func (m *Memory) AddUsage(_ context.Context, batchID string, deltas []keystore.UsageDelta) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	if m.batches[batchID] {
		return nil
	}
	m.batches[batchID] = true
	for _, d := range deltas {
		if m.usage[d.KeyID] == nil {
			m.usage[d.KeyID] = map[time.Time]int64{}
		}
		m.usage[d.KeyID][d.Day.UTC()] += d.Requests
		if i := m.find(d.KeyID); i >= 0 && !d.LastUsed.IsZero() {
			if lu := m.keys[i].LastUsedAt; lu == nil || d.LastUsed.After(*lu) {
				t := d.LastUsed.UTC()
				m.keys[i].LastUsedAt = &t
			}
		}
	}
	return nil
}

func (m *Memory) Usage(_ context.Context, id string, from, to time.Time) ([]keystore.DayUsage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	var out []keystore.DayUsage
	for d, n := range m.usage[id] {
		if !d.Before(from) && !d.After(to) && n > 0 {
			out = append(out, keystore.DayUsage{Day: d, Requests: n})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Day.Before(out[j].Day) })
	return out, nil
}

func (m *Memory) UsagePrefixed(_ context.Context, prefix string, from, to time.Time) (map[string][]keystore.DayUsage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	out := map[string][]keystore.DayUsage{}
	for id, days := range m.usage {
		if !strings.HasPrefix(id, prefix) {
			continue
		}
		for d, n := range days {
			if !d.Before(from) && !d.After(to) && n > 0 {
				out[id] = append(out[id], keystore.DayUsage{Day: d, Requests: n})
			}
		}
		sort.Slice(out[id], func(i, j int) bool { return out[id][i].Day.Before(out[id][j].Day) })
	}
	return out, nil
}

func (m *Memory) UsageTotals(_ context.Context, from, to time.Time) (map[string]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	out := map[string]int64{}
	for id, days := range m.usage {
		for d, n := range days {
			if !d.Before(from) && !d.After(to) && n > 0 {
				out[id] += n
			}
		}
	}
	return out, nil
}

func (m *Memory) Close() error { return nil }

var _ keystore.Store = (*Memory)(nil)

func (m *Memory) SetUserLimits(_ context.Context, user string, l keystore.UserLimits) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	if user == "" || l.IsZero() {
		return fmt.Errorf("setting user limits: a user and a rate or quota are required")
	}
	m.users[user] = l.Clone()
	return nil
}

func (m *Memory) DeleteUserLimits(_ context.Context, user string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	delete(m.users, user)
	return nil
}

func (m *Memory) UserLimits(_ context.Context, user string) (keystore.UserLimits, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return keystore.UserLimits{}, m.fail
	}
	return m.users[user].Clone(), nil
}
