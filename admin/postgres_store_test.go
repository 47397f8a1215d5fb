package admin

import (
	"context"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/postgres"
)

// Every HTTP test also runs against the Postgres store, each in a schema of
// its own; that row skips, saying why, when KEYGATE_TEST_DATABASE_URL is
// unset (CI sets it).
func init() {
	stores = append(stores, struct {
		name string
		open func(t *testing.T) keystore.Store
	}{"postgres", openPostgres})
}

func openPostgres(t *testing.T) keystore.Store {
	t.Helper()
	schema := pgtest.Schema(t, "kgadmin") // dropped after the store is closed
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, pgtest.DSN(t), postgres.Options{Schema: schema, MaxConns: 4})
	if err != nil {
		t.Fatalf("opening postgres store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("migrating postgres store: %v", err)
	}
	return s
}
