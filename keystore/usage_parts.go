package keystore

import (
	"strings"
	"time"
)

// Usage breakdowns (GET /keys/{id}/usage?by=area|status). Each part of a
// key's usage — an area, or a class of the answer — is counted by the Meter
// under a usage id of its own, PartUsageID(key, by, name), with every
// guarantee of the key's own count: the same batches, the same
// exactly-once flush, the same journal. The stores need nothing new to keep
// them, and the licence report, which reads key ids, never sees them.
const (
	// ByArea splits a key's requests by the area they were judged in. A
	// GraphQL document that touches several areas counts once in each.
	ByArea = "area"
	// ByStatus splits a key's requests by the class of the answer the
	// client got: "1xx" … "5xx" ("other" for a code outside 100–599).
	ByStatus = "status"
)

// partSeparator joins a key id and a part. Key ids and user names of usage
// ids never hold it, and area names may not.
const partSeparator = "|"

// PartUsageID is the usage id a part (by, name) of key keyID is counted
// under.
func PartUsageID(keyID, by, name string) string {
	return keyID + partSeparator + by + ":" + name
}

// PartPrefix is the prefix of every usage id of key keyID's parts by by.
func PartPrefix(keyID, by string) string { return keyID + partSeparator + by + ":" }

// SplitPartUsageID reverses PartUsageID; ok is false for an id that is not
// a part's.
func SplitPartUsageID(id string) (keyID, by, name string, ok bool) {
	keyID, rest, ok := strings.Cut(id, partSeparator)
	if !ok {
		return "", "", "", false
	}
	by, name, ok = strings.Cut(rest, ":")
	return keyID, by, name, ok
}

// ValidBreakdown reports whether by names a breakdown.
func ValidBreakdown(by string) bool { return by == ByArea || by == ByStatus }

var statusClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// StatusClass is the class of an HTTP status code, as ByStatus names it.
func StatusClass(code int) string {
	if code >= 100 && code < 600 {
		return statusClasses[code/100-1]
	}
	return "other"
}

// Tally is the usage record of one admitted request, returned by
// Meter.Count: its parts are counted through it without looking the key up
// again. The zero Tally counts nothing.
type Tally struct {
	m     *Meter
	e     *meterEntry
	keyID string
	now   time.Time
}

// Area counts the request in area name.
func (t Tally) Area(name string) {
	if t.m != nil && name != "" {
		t.m.countPart(t.e, t.keyID, ByArea, name, t.now)
	}
}

// Status counts the class of the answer the client got, on the day the
// request was counted.
func (t Tally) Status(code int) {
	if t.m != nil {
		t.m.countPart(t.e, t.keyID, ByStatus, StatusClass(code), t.now)
	}
}

// meterPart links a key's entry to the entry of one of its parts, so that
// counting a part is a short scan of the key's few parts, not a map lookup
// of a composite id that would have to be built (allocated) per request.
type meterPart struct {
	by, name string
	e        *meterEntry
}

// countPart counts one request of keyID's part (by, name) at now; parent is
// keyID's entry (it may have been swept since: its links stay usable).
func (m *Meter) countPart(parent *meterEntry, keyID, by, name string, now time.Time) {
	for {
		if c := parent.part(by, name); c != nil && c.count(now) {
			return
		}
		// Not linked yet, or dropped by Sweep: link the part's live entry.
		m.linkPart(parent, keyID, by, name)
	}
}

// part returns the linked entry of (by, name), or nil. Lock-free.
func (e *meterEntry) part(by, name string) *meterEntry {
	if l := e.parts.Load(); l != nil {
		for i := range *l {
			if p := &(*l)[i]; p.name == name && p.by == by {
				return p.e
			}
		}
	}
	return nil
}

// linkPart links (by, name) to the part's current entry in the Meter,
// replacing a link to an entry that Sweep dropped.
func (m *Meter) linkPart(parent *meterEntry, keyID, by, name string) {
	c := m.entry(PartUsageID(keyID, by, name))
	parent.mu.Lock()
	defer parent.mu.Unlock()
	var l []meterPart
	if old := parent.parts.Load(); old != nil {
		l = make([]meterPart, 0, len(*old)+1)
		for _, p := range *old {
			if p.by != by || p.name != name {
				l = append(l, p)
			}
		}
	}
	l = append(l, meterPart{by: by, name: name, e: c})
	parent.parts.Store(&l)
}

// PendingPartIDs returns the usage ids starting with prefix (see
// PartPrefix) that have counts not yet acknowledged by the store. It walks
// every entry: for the breakdown reads of the admin API, not for the
// request path.
func (m *Meter) PendingPartIDs(prefix string) []string {
	var ids []string
	m.keys.Range(func(k, _ any) bool {
		if id := k.(string); strings.HasPrefix(id, prefix) && len(m.PendingUsage(id)) > 0 {
			ids = append(ids, id)
		}
		return true
	})
	return ids
}

// countsAsKey reports whether usage id counts requests of a key itself:
// neither a user's total (UserUsageID) nor a part of a key.
func countsAsKey(id string) bool {
	return !strings.HasPrefix(id, userUsagePrefix) && !strings.Contains(id, partSeparator)
}
