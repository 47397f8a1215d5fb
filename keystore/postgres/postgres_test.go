package postgres_test

import (
	"context"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/postgres"
	"github.com/keygate/keygate/keystore/storetest"
)

// testDSN returns the test database URL or skips the test.
func testDSN(tb testing.TB) string {
	tb.Helper()
	return pgtest.DSN(tb)
}

// newSchema returns a fresh schema name, dropped when the test ends.
func newSchema(tb testing.TB) string {
	tb.Helper()
	return pgtest.Schema(tb, "kgtest")
}

// openStore opens a store on schema without migrating it; it is closed
// when the test ends (before the schema is dropped).
func openStore(tb testing.TB, schema string, opts postgres.Options) *postgres.Store {
	tb.Helper()
	opts.Schema = schema
	if opts.MaxConns == 0 {
		opts.MaxConns = 4
	}
	if opts.Logger == nil {
		if t, ok := tb.(*testing.T); ok {
			opts.Logger = zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
		}
	}
	s, err := postgres.Open(context.Background(), testDSN(tb), opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// newStore returns a migrated store in a schema of its own.
func newStore(tb testing.TB, opts postgres.Options) *postgres.Store {
	tb.Helper()
	s := openStore(tb, newSchema(tb), opts)
	if err := s.Migrate(context.Background()); err != nil {
		tb.Fatalf("Migrate: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	testDSN(t)
	storetest.Run(t, func(t *testing.T) keystore.Store {
		return newStore(t, postgres.Options{})
	})
}
