package poll_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/poll"
)

func TestUntil(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	if err := poll.Until(10*time.Second, "third call", func() bool { return calls.Add(1) == 3 }); err != nil {
		t.Fatalf("got %v, want nil", err)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("got %d calls, want 3", n)
	}
	err := poll.Until(20*time.Millisecond, "never", func() bool { return false })
	if err == nil || !strings.Contains(err.Error(), "never: not within 20ms") {
		t.Fatalf("got %v, want an error naming what was awaited", err)
	}
}
