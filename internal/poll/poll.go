// Package poll waits in tests for something observable to become true,
// instead of sleeping for a time that is hoped to be long enough.
package poll

import (
	"fmt"
	"time"
)

// Until calls cond until it returns true, sleeping between calls (1ms at
// first, growing to 10ms), and returns nil; when within passes first it
// returns an error naming what, the thing awaited ("first listener caught
// up: not within 10s").
func Until(within time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(within)
	wait := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s", what, within)
		}
		time.Sleep(wait)
		wait = min(2*wait, 10*time.Millisecond)
	}
	return nil
}
