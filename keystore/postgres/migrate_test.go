package postgres_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/postgres"
)

func TestMigrateFreshSchema(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	s := openStore(t, schema, postgres.Options{})
	ctx := t.Context()

	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	v, err := s.SchemaVersion(ctx)
	if err != nil {
		t.Fatalf("SchemaVersion: %v", err)
	}
	if v < 1 {
		t.Fatalf("SchemaVersion: got %d, want at least 1", v)
	}
	for _, table := range []string{"keys", "audit", "key_usage", "usage_batches", "key_changes", "key_changes_state", "schema_migrations"} {
		var ok bool
		err := s.Pool().QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.tables
			WHERE table_schema = $1 AND table_name = $2)`, schema, table).Scan(&ok)
		if err != nil || !ok {
			t.Errorf("table %s.%s: got exists=%v, err %v, want true, nil", schema, table, ok, err)
		}
	}

	// Re-running is a no-op: same version, same records, data kept.
	k := testKey(t, "u")
	if err := s.CreateKey(ctx, k, keystore.CreateLimits{}, time.Now()); err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	var before int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	var after int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("schema_migrations rows after re-run: got %d, want %d", after, before)
	}
	if _, err := s.GetKey(ctx, k.ID); err != nil {
		t.Errorf("GetKey after re-run: %v", err)
	}
}

func TestMigrateConcurrent(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	const n = 4
	stores := make([]*postgres.Store, n)
	for i := range stores {
		stores[i] = openStore(t, schema, postgres.Options{MaxConns: 2})
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, s := range stores {
		wg.Go(func() { errs[i] = s.Migrate(t.Context()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate #%d: %v", i, err)
		}
	}
	var rows, distinct int
	if err := stores[0].Pool().QueryRow(t.Context(),
		`SELECT count(*), count(DISTINCT version) FROM schema_migrations`).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != distinct || rows == 0 {
		t.Errorf("schema_migrations: got %d rows for %d versions, want one row per version", rows, distinct)
	}
}

func TestOpenDoesNotConnect(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1: Open must still succeed, and queries must
	// fail with ErrUnavailable.
	s, err := postgres.Open(t.Context(), "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2", postgres.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	_, err = s.GetKey(t.Context(), "key_x")
	if !errors.Is(err, keystore.ErrUnavailable) {
		t.Errorf("GetKey on an unreachable server: got %v, want ErrUnavailable", err)
	}
	if err := s.Migrate(t.Context()); !errors.Is(err, keystore.ErrUnavailable) {
		t.Errorf("Migrate on an unreachable server: got %v, want ErrUnavailable", err)
	}
}

func TestOpenBadDSNHidesPassword(t *testing.T) {
	t.Parallel()
	_, err := postgres.Open(t.Context(), "postgres://u:s3cret@host:notaport/db", postgres.Options{})
	if err == nil {
		t.Fatal("Open with a bad DSN: got no error")
	}
	if got := err.Error(); strings.Contains(got, "s3cret") {
		t.Errorf("Open error: got %q, which holds the password", got)
	}
}

func TestClosedStoreUnavailable(t *testing.T) {
	t.Parallel()
	s := newStore(t, postgres.Options{})
	s.Close()
	if _, err := s.GetKey(t.Context(), "key_x"); !errors.Is(err, keystore.ErrUnavailable) {
		t.Errorf("GetKey after Close: got %v, want ErrUnavailable", err)
	}
}

// testKey returns an active key of user with a random id and digest.
func testKey(tb testing.TB, user string) *keystore.Key {
	tb.Helper()
	id, err := keystore.NewID()
	if err != nil {
		tb.Fatal(err)
	}
	secret, err := keystore.GenerateKey(keystore.DefaultPrefix)
	if err != nil {
		tb.Fatal(err)
	}
	return &keystore.Key{
		ID:        id,
		Name:      "test",
		User:      user,
		Rights:    []string{"assets:read"},
		Start:     keystore.DisplayStart(secret),
		Digest:    keystore.DigestOf(secret),
		CreatedAt: time.Now(),
		CreatedBy: "local",
	}
}
