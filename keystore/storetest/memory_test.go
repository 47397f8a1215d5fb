package storetest

import (
	"testing"

	"github.com/keygate/keygate/keystore"
)

// The in-memory store used by the Service and admin tests is itself held
// to the conformance suite, so those tests run against real semantics.
func TestMemoryConformance(t *testing.T) {
	Run(t, func(t *testing.T) keystore.Store { return NewMemory() })
}
