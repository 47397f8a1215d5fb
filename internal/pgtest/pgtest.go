// Package pgtest gives each test a PostgreSQL schema or database of its own
// on the server named by KEYGATE_TEST_DATABASE_URL, dropped when the test
// ends. Tests skip, with a message naming the variable, when it is unset;
// CI always sets it.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Env names the variable holding the test server's DSN.
const Env = "KEYGATE_TEST_DATABASE_URL"

// timeout bounds each statement pgtest runs.
const timeout = 30 * time.Second

// DSN returns the DSN in Env, or skips tb when it is unset.
func DSN(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv(Env)
	if dsn == "" {
		tb.Skipf("%s is not set; example: postgres://postgres@127.0.0.1:5432/test?sslmode=disable", Env)
	}
	return dsn
}

// Schema returns a fresh schema name, prefix_<random>, in the database of
// DSN, and drops it (CASCADE) when tb ends. Nothing creates it: the store
// opened on it does. Call Schema before opening that store, so the store's
// own cleanup (closing it) runs first.
func Schema(tb testing.TB, prefix string) string {
	tb.Helper()
	dsn := DSN(tb)
	schema := prefix + "_" + random(tb)
	tb.Cleanup(func() {
		exec(tb, dsn, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
	})
	return schema
}

// Database creates a fresh database, prefix_<random>, on the server of DSN
// and returns its name and DSN; it is dropped (WITH (FORCE), so sessions
// still open do not keep it) when tb ends. Call it before starting what uses
// it, so that is stopped first.
func Database(tb testing.TB, prefix string) (name, dsn string) {
	tb.Helper()
	base := DSN(tb)
	name = prefix + "_" + random(tb)
	if !exec(tb, base, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()) {
		tb.FailNow()
	}
	tb.Cleanup(func() {
		exec(tb, base, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	})
	if u, err := url.Parse(base); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		return name, u.String()
	}
	return name, base + " dbname=" + name // key=value form: the last setting wins
}

// exec runs one statement on the database of dsn, reporting a failure with
// tb.Errorf (it also runs in cleanups, where FailNow would cut them short).
func exec(tb testing.TB, dsn, sql string) bool {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Errorf("connecting to %s for %q: %v", Env, sql, err)
		return false
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		tb.Errorf("%s: %v", sql, err)
		return false
	}
	return true
}

func random(tb testing.TB) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}
