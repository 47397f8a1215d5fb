package keystore

import (
	"testing"
	"time"
)

func TestFailureLimiter(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
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

func TestFailureLimiterBounded(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	f := NewFailureLimiter(1, time.Minute, 2)
	f.Fail("a", t0)
	f.Fail("b", t0)
	f.Fail("c", t0) // full, nothing expired: not tracked
	if b, _ := f.Blocked("c", t0); b {
		t.Fatal("an untracked client is blocked")
	}
	f.Fail("c", t0.Add(2*time.Minute)) // a and b expired: swept, c tracked
	if b, _ := f.Blocked("c", t0.Add(2*time.Minute)); !b {
		t.Fatal("c not blocked after its failure once there was room")
	}
	if b, _ := f.Blocked("a", t0.Add(2*time.Minute)); b {
		t.Fatal("a expired but still blocked")
	}
}
