// Package postgres is the PostgreSQL implementation of keystore.Store, for
// production and for several keygate instances sharing one database.
//
// Open builds a pgxpool without connecting (so `caddy validate` neither
// connects nor writes); Migrate applies the embedded migrations; Listen
// follows the change log (LISTEN/NOTIFY plus replay) so the caches of every
// instance drop changed keys quickly.
//
// Key mutations (CreateKey, UpdateKey, RevokeUser) hold one transaction-level
// advisory lock per schema until they commit. That makes the licence count
// and the insert atomic across instances, keeps current and previous digests
// unique across all keys, and makes change log sequences visible in commit
// order, so a listener that has applied sequence n never later finds a
// smaller one committed. Admin writes are rare; lookups and usage flushes
// never take the lock.
//
// The listener needs a session-level connection: point the DSN at
// PostgreSQL itself or at a pooler in session mode, not transaction mode.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/puddle/v2"
	"go.uber.org/zap"

	"github.com/keygate/keygate/keystore"
)

// Channel is the NOTIFY channel of the change log; the payload is the
// sequence number of the change, a space and the changed digests in hex,
// comma-separated.
const Channel = "keygate_changes"

// Defaults of Options.
const (
	DefaultListenPoll      = 5 * time.Second
	DefaultChangeRetention = time.Hour
	DefaultListenerName    = "keygate-listener"
	DefaultApplicationName = "keygate"
	DefaultLastUsedStep    = time.Minute

	batchRetention = 24 * time.Hour
	pruneEvery     = 5 * time.Minute
)

// Options configure a Store. The zero value is usable.
type Options struct {
	// MaxConns caps the pool; 0 keeps the DSN's pool_max_conns or pgxpool's
	// default (the larger of 4 and the number of CPUs).
	MaxConns int32
	// Schema, if set, is the only schema on the search_path of every
	// connection (the pool's and the listener's); Migrate creates it. Tests
	// give each store its own schema. Empty keeps the DSN's search_path.
	Schema string
	// Logger receives lifecycle and listener messages. Never a key or digest.
	// Nil logs nothing.
	Logger *zap.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// ListenPoll is how often a Listener replays the change log even
	// without a notification, as a backstop. Default 5s.
	ListenPoll time.Duration
	// ChangeRetention is how long change log rows are kept. A listener
	// disconnected for longer evicts every key when it comes back.
	// Default 1h.
	ChangeRetention time.Duration
	// ListenerName is the application_name of the listener's connection
	// (visible in pg_stat_activity). Default "keygate-listener".
	ListenerName string
	// LastUsedStep makes last_used_at coarse: a flush moves it only when
	// the new time is at least this much later, which spares a row update
	// per key per flush. Default 1m; negative updates on every later time.
	LastUsedStep time.Duration
}

// Store is a keystore.Store on PostgreSQL. It is safe for concurrent use.
type Store struct {
	pool     *pgxpool.Pool
	connCfg  *pgx.ConnConfig // template for listener connections
	schema   string
	log      *zap.Logger
	now      func() time.Time
	opts     Options
	lockKeys int64 // advisory lock serialising key mutations
	lockMig  int64 // advisory lock serialising migrations

	lastPrune atomic.Int64 // unix nanos of the last prune

	mu        sync.Mutex
	closed    bool
	listeners map[*Listener]struct{}
}

// Open returns a Store for dsn (a PostgreSQL URL or keyword/value string).
// It does not connect: the first query does (pool_min_conns in the DSN is
// ignored for that reason). Call Migrate before use.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parse error may quote the DSN, password included.
		return nil, errors.New("parsing postgres dsn: invalid connection string")
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	cfg.MinConns = 0
	rp := cfg.ConnConfig.RuntimeParams
	if opts.Schema != "" {
		rp["search_path"] = pgx.Identifier{opts.Schema}.Sanitize()
	}
	if rp["application_name"] == "" {
		rp["application_name"] = DefaultApplicationName
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ListenPoll <= 0 {
		opts.ListenPoll = DefaultListenPoll
	}
	if opts.ChangeRetention <= 0 {
		opts.ChangeRetention = DefaultChangeRetention
	}
	if opts.ListenerName == "" {
		opts.ListenerName = DefaultListenerName
	}
	if opts.LastUsedStep == 0 {
		opts.LastUsedStep = DefaultLastUsedStep
	} else if opts.LastUsedStep < 0 {
		opts.LastUsedStep = 0
	}
	connCfg := cfg.ConnConfig.Copy()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("creating postgres pool: %w", err)
	}
	return &Store{
		pool:      pool,
		connCfg:   connCfg,
		schema:    opts.Schema,
		log:       opts.Logger,
		now:       opts.Now,
		opts:      opts,
		lockKeys:  lockID("keys", opts.Schema),
		lockMig:   lockID("migrate", opts.Schema),
		listeners: map[*Listener]struct{}{},
	}, nil
}

// Pool returns the underlying pool, for health checks and tests.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("pinging postgres: %w", translate(err))
	}
	return nil
}

// Close stops the store's listeners and closes the pool. It is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	ls := make([]*Listener, 0, len(s.listeners))
	for l := range s.listeners {
		ls = append(ls, l)
	}
	s.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
	s.pool.Close()
	return nil
}

// lockID derives an advisory lock id per purpose and schema, so stores in
// different schemas (tests) do not serialise on each other.
func lockID(purpose, schema string) int64 {
	h := fnv.New64a()
	io.WriteString(h, "keygate/"+purpose+"/"+schema)
	return int64(h.Sum64())
}

// unavailableError marks failures that mean "try later".
type unavailableError struct{ err error }

func (e *unavailableError) Error() string {
	return keystore.ErrUnavailable.Error() + ": " + e.err.Error()
}
func (e *unavailableError) Unwrap() []error {
	return []error{keystore.ErrUnavailable, e.err}
}

// translate maps driver errors to keystore's sentinel errors.
func translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return keystore.ErrNotFound
	}
	if errors.Is(err, keystore.ErrUnavailable) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505":
			return fmt.Errorf("%w: %s", keystore.ErrConflict, pgErr.ConstraintName)
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == "53300",                                               // too many connections
			pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03", // shutdown, crash, starting
			pgErr.Code == "57014" && errors.Is(err, context.DeadlineExceeded): // statement timeout by deadline
			return &unavailableError{err}
		}
		return err
	}
	var (
		connectErr *pgconn.ConnectError
		netErr     net.Error
	)
	switch {
	case errors.As(err, &connectErr), errors.As(err, &netErr),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, puddle.ErrClosedPool), errors.Is(err, context.DeadlineExceeded),
		pgconn.Timeout(err), pgconn.SafeToRetry(err):
		return &unavailableError{err}
	}
	return err
}

var _ keystore.Store = (*Store)(nil)
