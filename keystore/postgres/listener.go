package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/keygate/keygate/keystore"
)

const (
	// Reconnect attempts back off from reconnectMin to reconnectMax (each
	// jittered to between half and all of it). reconnectMax bounds how
	// long after the database returns the listener replays what it missed:
	// an instance must recover within 5s of an outage (docs/design.md §5), and a
	// reconnect every 1–2s per instance costs the server nothing.
	reconnectMin = 250 * time.Millisecond
	reconnectMax = 2 * time.Second
	replayPage   = 1000
)

// Listener follows the change log and hands the digests of changed keys to a
// callback, so caches can evict them. It holds one dedicated connection
// (not from the pool) running LISTEN keygate_changes. On every notification,
// on every poll (Options.ListenPoll) and on every (re)connect it replays the
// change log rows after the last sequence it applied, so a notification lost
// while the connection was down costs a delay, never a stale cache. Changes
// made by this process come back too, which is harmless.
//
// If the log was pruned past the last applied sequence (the listener was
// away longer than Options.ChangeRetention), it hands over the digests of
// every key instead.
type Listener struct {
	s      *Store
	fn     func([]keystore.Digest)
	cancel context.CancelFunc
	done   chan struct{}

	lastSeq       atomic.Int64
	resyncs       atomic.Int64
	reconnects    atomic.Int64
	notifications atomic.Int64
	replayed      atomic.Int64
	lag           atomic.Int64 // nanoseconds
	connected     atomic.Bool
	closeOnce     sync.Once
}

// ListenerStats is a snapshot of a Listener's counters.
type ListenerStats = keystore.FeedStats

// WatchChanges implements keystore.ChangeFeed: a Listener replaying the
// whole retained log at its first connect.
func (s *Store) WatchChanges(ctx context.Context, evict func(digests []keystore.Digest)) keystore.FeedWatcher {
	return s.Listen(ctx, 0, evict)
}

// Listen starts a Listener. Changes with a sequence above lastSeq are
// replayed at the first connect; 0 replays the whole retained log, which is
// cheap and right for a fresh cache. fn is called from the listener's
// goroutine, once per notification as it arrives and once per replayed
// page, with the current and previous digests of the changed keys (so a
// digest may be handed over twice). The listener stops when ctx is done, on
// Listener.Close or on Store.Close.
func (s *Store) Listen(ctx context.Context, lastSeq int64, fn func(digests []keystore.Digest)) *Listener {
	ctx, cancel := context.WithCancel(ctx)
	l := &Listener{s: s, fn: fn, cancel: cancel, done: make(chan struct{})}
	l.lastSeq.Store(lastSeq)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancel()
		close(l.done)
		return l
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	go l.run(ctx)
	return l
}

// LastSeq returns the last change log sequence applied.
func (l *Listener) LastSeq() int64 { return l.lastSeq.Load() }

// Stats returns the listener's counters.
func (l *Listener) Stats() ListenerStats {
	return ListenerStats{
		LastSeq:       l.lastSeq.Load(),
		Connected:     l.connected.Load(),
		Resyncs:       l.resyncs.Load(),
		Reconnects:    l.reconnects.Load(),
		Notifications: l.notifications.Load(),
		Changes:       l.replayed.Load(),
		Lag:           time.Duration(l.lag.Load()),
	}
}

// Done is closed when the listener has stopped.
func (l *Listener) Done() <-chan struct{} { return l.done }

// Close stops the listener and waits for it. It is idempotent.
func (l *Listener) Close() {
	l.closeOnce.Do(func() {
		l.cancel()
		<-l.done
		l.s.mu.Lock()
		delete(l.s.listeners, l)
		l.s.mu.Unlock()
	})
}

func (l *Listener) run(ctx context.Context) {
	defer close(l.done)
	log := l.s.log
	wait := reconnectMin
	everConnected := false
	for {
		connected, err := l.session(ctx, everConnected)
		l.connected.Store(false)
		if ctx.Err() != nil {
			return
		}
		everConnected = everConnected || connected
		if connected {
			wait = reconnectMin
		}
		l.reconnects.Add(1)
		// Jitter spreads the reconnects of many instances.
		d := wait/2 + rand.N(wait/2+1)
		log.Warn("change listener disconnected; reconnecting",
			zap.Error(err), zap.Duration("retry_in", d))
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		wait = min(wait*2, reconnectMax)
	}
}

// session connects, listens and replays until the connection fails or ctx
// is done. connected reports whether LISTEN was established.
func (l *Listener) session(ctx context.Context, reconnect bool) (connected bool, err error) {
	cfg := l.s.connCfg.Copy()
	cfg.RuntimeParams["application_name"] = l.s.opts.ListenerName
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, fmt.Errorf("connecting: %w", translate(err))
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	// LISTEN before replaying: nothing committed after the replay's
	// snapshot can slip between the two.
	if _, err := conn.Exec(ctx, `LISTEN `+Channel); err != nil {
		return false, fmt.Errorf("listening: %w", translate(err))
	}
	n, err := l.replay(ctx, conn)
	if err != nil {
		return true, err
	}
	l.connected.Store(true)
	if reconnect {
		l.resyncs.Add(1)
		l.s.log.Info("resync", zap.Int("changes", n), zap.Int64("last_seq", l.lastSeq.Load()))
	} else {
		l.s.log.Debug("change listener connected", zap.Int("changes", n), zap.Int64("last_seq", l.lastSeq.Load()))
	}

	for {
		wctx, cancel := context.WithTimeout(ctx, l.s.opts.ListenPoll)
		note, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			l.notifications.Add(1)
			// Evict at once from the payload: the replay below costs two
			// round trips more. It still runs, in log order, and advances
			// the sequence.
			if ds := payloadDigests(note.Payload); len(ds) > 0 {
				l.fn(ds)
			}
		case ctx.Err() != nil:
			return true, nil
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			// Poll: replay anyway, and prune now and then.
			l.s.maybePrune(ctx)
		default:
			return true, fmt.Errorf("waiting for notifications: %w", translate(err))
		}
		if _, err := l.replay(ctx, conn); err != nil {
			return true, err
		}
	}
}

// payloadDigests parses the digests of a notification payload, "<seq>
// <hex>,<hex>…"; nil if there are none or the payload is not of that form.
func payloadDigests(payload string) []keystore.Digest {
	_, list, ok := strings.Cut(payload, " ")
	if !ok || list == "" {
		return nil
	}
	var ds []keystore.Digest
	for h := range strings.SplitSeq(list, ",") {
		d, err := keystore.ParseDigestHex(h)
		if err != nil {
			return nil
		}
		ds = append(ds, d)
	}
	return ds
}

// replay applies change log rows after the last applied sequence and
// returns how many it applied.
func (l *Listener) replay(ctx context.Context, conn *pgx.Conn) (int, error) {
	total := 0
	for {
		after := l.lastSeq.Load()
		var prunedThrough int64
		if err := conn.QueryRow(ctx, `SELECT pruned_through FROM key_changes_state`).Scan(&prunedThrough); err != nil {
			return total, fmt.Errorf("replaying changes: %w", translate(err))
		}
		if after > 0 && after < prunedThrough {
			n, err := l.evictAll(ctx, conn)
			if err != nil {
				return total, err
			}
			l.s.log.Warn("change log pruned past the last applied change; evicted every key",
				zap.Int64("last_seq", after), zap.Int64("pruned_through", prunedThrough), zap.Int("keys", n))
		}
		rows, err := conn.Query(ctx, `SELECT seq, digests, clock_timestamp() - at FROM key_changes
			WHERE seq > $1 ORDER BY seq LIMIT $2`,
			after, replayPage)
		if err != nil {
			return total, fmt.Errorf("replaying changes: %w", translate(err))
		}
		var (
			digests []keystore.Digest
			last    = after
			lag     time.Duration
			n       int
		)
		for rows.Next() {
			var (
				seq int64
				ds  [][]byte
			)
			if err := rows.Scan(&seq, &ds, &lag); err != nil {
				rows.Close()
				return total, fmt.Errorf("replaying changes: %w", translate(err))
			}
			for _, b := range ds {
				var d keystore.Digest
				if len(b) == len(d) {
					copy(d[:], b)
					digests = append(digests, d)
				}
			}
			last = seq
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return total, fmt.Errorf("replaying changes: %w", translate(err))
		}
		if n > 0 {
			if len(digests) > 0 {
				l.fn(digests)
			}
			l.lastSeq.Store(last)
			l.lag.Store(int64(lag))
			l.replayed.Add(int64(n))
			total += n
		}
		if n < replayPage {
			return total, nil
		}
	}
}

// evictAll hands over the digests of every key, a page at a time.
func (l *Listener) evictAll(ctx context.Context, conn *pgx.Conn) (int, error) {
	var (
		after string
		total int
	)
	for {
		rows, err := conn.Query(ctx, `SELECT id, digest, prev_digest FROM keys WHERE id > $1 ORDER BY id LIMIT $2`,
			after, replayPage)
		if err != nil {
			return total, fmt.Errorf("evicting every key: %w", translate(err))
		}
		var digests []keystore.Digest
		n := 0
		for rows.Next() {
			var cur, prev []byte
			if err := rows.Scan(&after, &cur, &prev); err != nil {
				rows.Close()
				return total, fmt.Errorf("evicting every key: %w", translate(err))
			}
			for _, b := range [][]byte{cur, prev} {
				var d keystore.Digest
				if len(b) == len(d) {
					copy(d[:], b)
					digests = append(digests, d)
				}
			}
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return total, fmt.Errorf("evicting every key: %w", translate(err))
		}
		if len(digests) > 0 {
			l.fn(digests)
		}
		total += n
		if n < replayPage {
			return total, nil
		}
	}
}
