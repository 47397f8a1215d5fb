package caddymodule

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/keygate/keygate/keystore/notify"
)

// webhookCounters count webhook deliveries for metrics; they live in the
// pooled resources, so they survive reloads.
type webhookCounters struct {
	delivered, failed atomic.Uint64
	pending           atomic.Int64
}

func (w *webhookCounters) result(r string) {
	if r == "delivered" {
		w.delivered.Add(1)
	} else {
		w.failed.Add(1)
	}
}

// notifier is a config's running webhook deliverer. Each config runs its
// own, with its destinations and secrets; during a reload the old and the
// new one overlap, and the outbox's leases hand each delivery to one of
// them. Stopping finishes the POST under way, so a reload neither loses nor
// repeats a delivery.
type notifier struct {
	n      *notify.Notifier
	cancel context.CancelFunc
	done   sync.WaitGroup
	once   sync.Once
}

// provisionNotify resolves the destinations' secrets.
func (a *App) provisionNotify(repl *caddy.Replacer) error {
	a.targets = nil
	for _, n := range a.Notify {
		t := n.target()
		secret, err := repl.ReplaceOrErr(n.Secret, true, true)
		if err != nil {
			return fmt.Errorf("notify %s: resolving the secret: %w", n.URL, err)
		}
		t.Secret = secret
		a.targets = append(a.targets, t)
	}
	return nil
}

// validateNotify checks the destinations (secrets resolved).
func (a *App) validateNotify() error {
	seen := map[string]bool{}
	for i := range a.targets {
		t := &a.targets[i]
		if err := t.Validate(); err != nil {
			return fmt.Errorf("%w (is the secret's variable set?)", err)
		}
		if seen[t.URL] {
			return fmt.Errorf("notify %s is given twice; merge the destinations", a.Notify[i].URL)
		}
		seen[t.URL] = true
	}
	if w := a.Webhooks; w != nil && (w.Timeout < 0 || w.RetryMin < 0 || w.RetryMax < 0 || w.PollInterval < 0 || w.ScanInterval < 0) {
		return fmt.Errorf("webhooks: durations must not be negative")
	}
	return nil
}

// startNotify hooks webhooks into the key service and starts delivering.
// a.svc must be built.
func (a *App) startNotify() {
	if len(a.targets) == 0 {
		return
	}
	w := a.Webhooks
	if w == nil {
		w = &WebhooksConfig{}
	}
	res := a.res
	n := notify.New(notify.Options{
		Store:        res.store,
		Targets:      a.targets,
		License:      a.License,
		DefaultQuota: a.defaultQuota(),
		Local:        res.meter,
		Timeout:      time.Duration(w.Timeout),
		MinBackoff:   time.Duration(w.RetryMin),
		MaxBackoff:   time.Duration(w.RetryMax),
		PollInterval: time.Duration(w.PollInterval),
		ScanInterval: time.Duration(w.ScanInterval),
		Logger:       a.logger.Named("webhooks"),
		OnResult:     res.webhooks.result,
		OnPending:    res.webhooks.pending.Store,
	})
	a.svc.OnAudit = append(a.svc.OnAudit, n.Audit)
	ctx, cancel := context.WithCancel(context.Background())
	nt := &notifier{n: n, cancel: cancel}
	nt.done.Add(1)
	go func() { defer nt.done.Done(); n.Run(ctx) }()
	a.notifier = nt
}

// stopNotify stops this config's deliverer, waiting for the POST under way.
func (a *App) stopNotify() {
	if a.notifier == nil {
		return
	}
	a.notifier.once.Do(func() {
		a.notifier.cancel()
		a.notifier.done.Wait()
	})
}
