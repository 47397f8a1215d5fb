package keystore

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"
)

var failT0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func TestFailureLimiter(t *testing.T) {
	t.Parallel()
	t0 := failT0
	f := NewFailureLimiter(3, time.Minute, 10)
	if b, _ := f.Blocked("10.0.0.1", t0); b {
		t.Fatal("blocked before any failure")
	}
	for i := 0; i < 3; i++ {
		if b, _ := f.Blocked("10.0.0.1", t0); b {
			t.Fatalf("blocked after %d failures, want only after 3", i)
		}
		f.Fail("10.0.0.1", t0.Add(time.Duration(i)*time.Second))
	}
	b, retry := f.Blocked("10.0.0.1", t0.Add(10*time.Second))
	if !b || retry != 50*time.Second {
		t.Fatalf("got blocked=%v retry=%v, want true 50s", b, retry)
	}
	if b, _ := f.Blocked("10.0.0.2", t0.Add(10*time.Second)); b {
		t.Fatal("another client is blocked")
	}
	if b, _ := f.Blocked("10.0.0.1", t0.Add(time.Minute)); b {
		t.Fatal("still blocked after the window")
	}
	// A failure after the window starts a new one.
	f.Fail("10.0.0.1", t0.Add(61*time.Second))
	if b, _ := f.Blocked("10.0.0.1", t0.Add(62*time.Second)); b {
		t.Fatal("blocked after one failure in a new window")
	}
	if got := f.BlockedTotal(); got != 1 {
		t.Fatalf("BlockedTotal: got %d, want 1", got)
	}
}

// TestFailureLimiterSemantics: failures at the given offsets from t0, then
// Blocked at `at`.
func TestFailureLimiterSemantics(t *testing.T) {
	t.Parallel()
	s := time.Second
	for _, tc := range []struct {
		name      string
		limit     int
		fails     []time.Duration
		at        time.Duration
		blocked   bool
		retryWant time.Duration
	}{
		{"no failures", 3, nil, 0, false, 0},
		{"below the limit", 3, []time.Duration{0, s}, 2 * s, false, 0},
		{"at the limit", 3, []time.Duration{0, s, 2 * s}, 3 * s, true, 57 * s},
		{"over the limit", 3, []time.Duration{0, s, 2 * s, 3 * s}, 4 * s, true, 56 * s},
		{"last nanosecond of the window", 2, []time.Duration{0, s}, time.Minute - 1, true, 1},
		{"window end", 2, []time.Duration{0, s}, time.Minute, false, 0},
		{"old failures do not count in a new window", 2, []time.Duration{0, 61 * s}, 62 * s, false, 0},
		{"a new window counts from its first failure", 2, []time.Duration{0, 61 * s, 62 * s}, 63 * s, true, 58 * s},
		{"limit 1", 1, []time.Duration{5 * s}, 5 * s, true, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFailureLimiter(tc.limit, time.Minute, 1000)
			for _, d := range tc.fails {
				f.Fail("192.0.2.7", failT0.Add(d))
			}
			b, retry := f.Blocked("192.0.2.7", failT0.Add(tc.at))
			if b != tc.blocked || retry != tc.retryWant {
				t.Fatalf("Blocked: got %v %v, want %v %v", b, retry, tc.blocked, tc.retryWant)
			}
		})
	}
}

func TestFailureLimiterGrouping(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true},
		{"2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"2001:db8:1:2::1%eth0", "2001:db8:1:2::2", true},
		{"192.0.2.1", "::ffff:192.0.2.1", true},
		{"192.0.2.1", "192.0.2.2", false},
		{"192.0.2.1", "::ffff:c000:201", true},
		{"not an address", "not an address", true},
		{"not an address", "not an address!", false},
		{"@", "", false},
	} {
		f := NewFailureLimiter(1, time.Minute, 1000)
		f.Fail(tc.a, failT0)
		if b, _ := f.Blocked(tc.b, failT0); b != tc.same {
			t.Errorf("a failure from %q: %q blocked=%v, want %v", tc.a, tc.b, b, tc.same)
		}
	}
}

func TestFailureLimiterBounded(t *testing.T) {
	t.Parallel()
	f := NewFailureLimiter(2, time.Minute, 2)
	f.Fail("10.0.0.1", failT0) // a repeat offender: blocked
	f.Fail("10.0.0.1", failT0)
	f.Fail("10.0.0.2", failT0)
	for i := range 10 {
		// A full table takes new clients in, at the cost of one-off ones;
		// the blocked client keeps trying, which keeps its entry.
		f.Blocked("10.0.0.1", failT0)
		f.Fail(fmt.Sprintf("10.1.0.%d", i), failT0)
		if n := f.Len(); n > 2 {
			t.Fatalf("tracking %d clients, want at most 2", n)
		}
	}
	if b, _ := f.Blocked("10.0.0.1", failT0); !b {
		t.Fatal("the repeat offender lost its entry to one-off clients")
	}
	f.Fail("10.1.0.9", failT0)
	if b, _ := f.Blocked("10.1.0.9", failT0); !b {
		t.Fatal("the newest client was not tracked")
	}
	if n := f.Sweep(failT0.Add(time.Minute)); n != 2 || f.Len() != 0 {
		t.Fatalf("Sweep after the window: dropped %d, %d left; want 2, 0", n, f.Len())
	}
}

// TestFailureLimiterEvictionBound: a million clients never hold more than
// maxClients entries, and expired entries are reused first.
func TestFailureLimiterEvictionBound(t *testing.T) {
	t.Parallel()
	const max = 5000
	f := NewFailureLimiter(3, time.Minute, max)
	for i := range 1_000_000 {
		f.Fail(ipv4(i), failT0.Add(time.Duration(i)*time.Microsecond))
	}
	n := 0
	for _, e := range f.entries {
		if e.kind != 0 {
			n++
		}
	}
	if n > max || f.Len() != n {
		t.Fatalf("tracking %d clients (Len %d), want at most %d", n, f.Len(), max)
	}
	if n < max*9/10 {
		t.Fatalf("tracking only %d clients of %d slots", n, max)
	}
}

func TestFailureLimiterConcurrent(t *testing.T) {
	t.Parallel()
	const limit, workers, per = 50, 8, 2000
	f := NewFailureLimiter(limit, time.Hour, 1000)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				now := failT0.Add(time.Duration(i) * time.Millisecond)
				c := ipv4(w*per + i)
				if i%2 == 0 {
					c = "2001:db8::1" // shared by all workers
				}
				f.Blocked(c, now)
				f.Fail(c, now)
				if i%500 == 0 {
					f.Sweep(now)
				}
			}
		}()
	}
	wg.Wait()
	if b, _ := f.Blocked("2001:db8::ffff", failT0.Add(time.Second)); !b {
		t.Fatal("the shared /64 is not blocked")
	}
	if n := f.Len(); n > 1000 {
		t.Fatalf("tracking %d clients, want at most 1000", n)
	}
}

func TestFailureLimiterNoAllocs(t *testing.T) {
	f := NewFailureLimiter(3, time.Minute, 1000)
	f.Fail("10.0.0.1", failT0)
	clients := []string{"10.0.0.1", "10.0.0.2", "2001:db8::1", "peer"}
	allocs := testing.AllocsPerRun(100, func() {
		for _, c := range clients {
			f.Blocked(c, failT0)
			f.Fail(c, failT0)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per round, want 0", allocs)
	}
}

// ipv4 returns a distinct IPv4 address for each i < 2^24.
func ipv4(i int) string {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()
}

func benchFailureLimiter(b *testing.B, clients, maxClients int) {
	addrs := make([]string, clients)
	for i := range addrs {
		addrs[i] = ipv4(i)
	}
	f := NewFailureLimiter(100, time.Minute, maxClients)
	now := failT0
	for _, c := range addrs { // steady state: the table full, or all clients in it
		f.Fail(c, now)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c := addrs[i%clients]
		f.Blocked(c, now)
		f.Fail(c, now)
	}
}

// BenchmarkFailureLimiter1M is one Blocked and one Fail per op over a million
// distinct clients with the default table (100,000 entries): nearly every
// op evicts an entry. Compare BenchmarkFailureLimiter1k (all clients fit)
// and BenchmarkFailureLimiter1MSmallTable (a million clients, evicting on
// every op, over a 1,000-entry table): the work per op does not depend on
// the number of clients; what is left of the difference is the default
// table (3.2 MB) missing the CPU caches.
func BenchmarkFailureLimiter1M(b *testing.B) { benchFailureLimiter(b, 1_000_000, 0) }

func BenchmarkFailureLimiter1k(b *testing.B) { benchFailureLimiter(b, 1000, 0) }

func BenchmarkFailureLimiter1MSmallTable(b *testing.B) { benchFailureLimiter(b, 1_000_000, 1000) }

// TestFailureLimiterShortcutModel drives the limiter with random failures,
// checks and sweeps over a few clients and compares every answer with a
// plain model of the rules, so Blocked's shortcut (no client at its limit)
// never lets a blocked client through and atLimit stays exact.
func TestFailureLimiterShortcutModel(t *testing.T) {
	t.Parallel()
	type state struct {
		start time.Time
		count int
	}
	for _, limit := range []int{1, 3} {
		f := NewFailureLimiter(limit, time.Minute, 1000)
		model := map[string]*state{}
		clients := []string{"192.0.2.1", "192.0.2.2", "2001:db8:1::1", "2001:db8:2::1", "unix-peer"} // IPv6 counts by /64
		rng := rand.New(rand.NewPCG(uint64(limit), 7))
		now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
		for step := range 20_000 {
			now = now.Add(time.Duration(rng.IntN(4000)) * time.Millisecond)
			c := clients[rng.IntN(len(clients))]
			switch op := rng.IntN(10); {
			case op < 4:
				f.Fail(c, now)
				s := model[c]
				if s == nil || now.Sub(s.start) >= time.Minute {
					s = &state{start: now}
					model[c] = s
				}
				s.count++
			case op < 9:
				s := model[c]
				want := s != nil && s.count >= limit && now.Sub(s.start) < time.Minute
				if got, _ := f.Blocked(c, now); got != want {
					t.Fatalf("limit %d, step %d: Blocked(%s) = %v, want %v (model %+v)", limit, step, c, got, want, s)
				}
			default:
				f.Sweep(now)
				for k, s := range model {
					if now.Sub(s.start) >= time.Minute {
						delete(model, k)
					}
				}
			}
			// The table, not the model, is the reference here: a new
			// client may reuse another's expired entry in its bucket.
			at := 0
			for i := range f.entries {
				if f.isAtLimit(&f.entries[i]) {
					at++
				}
			}
			if got := f.atLimit.Load(); got != int64(at) {
				t.Fatalf("limit %d, step %d: atLimit %d, want %d", limit, step, got, at)
			}
		}
	}
}
