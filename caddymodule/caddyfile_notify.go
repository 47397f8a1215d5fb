package caddymodule

import (
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/keygate/keygate/keystore/notify"
)

// parseNotify parses one webhook destination:
//
//	notify <url> {
//		secret          <value>          # required, e.g. {env.WEBHOOK_SECRET}
//		events          <type>...        # default: all
//		expiring_within <duration>       # default 7d
//	}
func parseNotify(d *caddyfile.Dispenser) (NotifyConfig, error) {
	var n NotifyConfig
	if !d.NextArg() {
		return n, d.Err("notify needs the URL events are POSTed to, e.g. notify https://hooks.example.com/keygate { secret {env.WEBHOOK_SECRET} }")
	}
	n.URL = d.Val()
	file, line := d.File(), d.Line()
	if err := (&notify.Target{URL: n.URL, Secret: "-"}).Validate(); err != nil {
		return n, d.Err(err.Error())
	}
	if d.NextArg() {
		return n, d.Err("notify takes one URL; give each destination its own notify block")
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return n, d.Errf("notify %s: repeated subdirective; give it once", opt)
		}
		seen[opt] = true
		switch opt {
		case "secret":
			v, err := oneArg(d)
			if err != nil {
				return n, err
			}
			n.Secret = v
		case "events":
			n.Events = d.RemainingArgs()
			if len(n.Events) == 0 {
				return n, d.Errf("events needs at least one event type; known: %s", strings.Join(notify.EventTypes, ", "))
			}
			if err := (&notify.Target{URL: n.URL, Secret: "-", Events: n.Events}).Validate(); err != nil {
				return n, d.Err(err.Error())
			}
		case "expiring_within":
			dur, err := durationArg(d, opt)
			if err != nil {
				return n, err
			}
			n.ExpiringWithin = dur
		default:
			return n, d.Errf("unknown notify option %q; known: secret, events, expiring_within", opt)
		}
	}
	// The secret is checked for presence only: it is normally a
	// placeholder, resolved at provisioning.
	if n.Secret == "" {
		return n, fmt.Errorf("%s:%d: notify %s needs a secret (secret {env.WEBHOOK_SECRET}); receivers verify the signature with it", file, line, n.URL)
	}
	return n, nil
}

// parseWebhooks parses the tuning of webhook delivery:
//
//	webhooks {
//		timeout       <duration>   # per POST, default 10s
//		retry_min     <duration>   # first retry, default 1s
//		retry_max     <duration>   # cap of the doubling, default 1h
//		poll_interval <duration>   # outbox reads, default 2s
//		scan_interval <duration>   # expiry, quota and licence checks, default 1m
//	}
func parseWebhooks(d *caddyfile.Dispenser) (*WebhooksConfig, error) {
	w := &WebhooksConfig{}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return nil, d.Errf("webhooks %s: repeated subdirective; give it once", opt)
		}
		seen[opt] = true
		var dst *caddy.Duration
		switch opt {
		case "timeout":
			dst = &w.Timeout
		case "retry_min":
			dst = &w.RetryMin
		case "retry_max":
			dst = &w.RetryMax
		case "poll_interval":
			dst = &w.PollInterval
		case "scan_interval":
			dst = &w.ScanInterval
		default:
			return nil, d.Errf("unknown webhooks option %q; known: timeout, retry_min, retry_max, poll_interval, scan_interval", opt)
		}
		dur, err := durationArg(d, opt)
		if err != nil {
			return nil, err
		}
		*dst = dur
	}
	return w, nil
}

// NotifyConfig is one webhook destination.
type NotifyConfig struct {
	// URL is the absolute http or https URL events are POSTed to.
	URL string `json:"url"`
	// Secret signs the bodies (Keygate-Signature); required. Placeholders
	// such as {env.WEBHOOK_SECRET} are resolved.
	Secret string `json:"secret"`
	// Events are the event types sent: key.created, key.rotated,
	// key.revoked, key.expiring, key.expired, quota.threshold,
	// license.threshold. Default: all.
	Events []string `json:"events,omitempty"`
	// ExpiringWithin is how long before a key expires key.expiring is
	// sent. Default 7d.
	ExpiringWithin caddy.Duration `json:"expiring_within,omitempty"`
}

func (n NotifyConfig) target() notify.Target {
	return notify.Target{URL: n.URL, Secret: n.Secret, Events: n.Events, ExpiringWithin: time.Duration(n.ExpiringWithin)}
}

// WebhooksConfig tunes webhook delivery.
type WebhooksConfig struct {
	// Timeout bounds each POST. Default 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// RetryMin is the wait after the first failed attempt; it doubles with
	// each failure. Default 1s.
	RetryMin caddy.Duration `json:"retry_min,omitempty"`
	// RetryMax caps the wait between attempts. Default 1h.
	RetryMax caddy.Duration `json:"retry_max,omitempty"`
	// PollInterval is how often the outbox is read for due deliveries
	// (events of this instance go at once). Default 2s.
	PollInterval caddy.Duration `json:"poll_interval,omitempty"`
	// ScanInterval is how often expiries, quotas and the licence are
	// checked. Default 1m.
	ScanInterval caddy.Duration `json:"scan_interval,omitempty"`
}
