package admin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/postgres"
)

// With KEYGATE_TEST_DATABASE_URL set (CI sets it), every HTTP test also runs
// against the Postgres store, each in a schema of its own.
func init() {
	dsn := os.Getenv("KEYGATE_TEST_DATABASE_URL")
	if dsn == "" {
		return
	}
	stores = append(stores, struct {
		name string
		open func(t *testing.T) keystore.Store
	}{"postgres", func(t *testing.T) keystore.Store { return openPostgres(t, dsn) }})
}

func openPostgres(t *testing.T, dsn string) keystore.Store {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	schema := "kgadmin_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, dsn, postgres.Options{Schema: schema, MaxConns: 4})
	if err != nil {
		t.Fatalf("opening postgres store: %v", err)
	}
	t.Cleanup(func() {
		s.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("dropping schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
			t.Errorf("dropping schema %s: %v", schema, err)
		}
	})
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("migrating postgres store: %v", err)
	}
	return s
}
