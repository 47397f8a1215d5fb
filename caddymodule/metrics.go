package caddymodule

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics go into Caddy's Prometheus registry (served on its /metrics).
// Counters live in the pooled resources, so they survive reloads; the
// collector registered by each config reads them. Never a key id as a label.

var (
	descRequests = prometheus.NewDesc("keygate_requests_total",
		"Requests seen by the apikey handlers, by result.", []string{"result"}, nil)
	descCacheHits = prometheus.NewDesc("keygate_cache_hits_total",
		"Key lookups answered by the cache.", nil, nil)
	descCacheMisses = prometheus.NewDesc("keygate_cache_misses_total",
		"Key lookups that missed the cache.", nil, nil)
	descStoreErrors = prometheus.NewDesc("keygate_store_errors_total",
		"Store lookups that failed (the request got 503 unless a cached key was served).", nil, nil)
	descStaleServed = prometheus.NewDesc("keygate_cache_stale_served_total",
		"Requests served from a stale cache entry (past refresh_after, while it was re-read or the store was unreachable).", nil, nil)
	descPending = prometheus.NewDesc("keygate_meter_pending_requests",
		"Counted requests not yet written to the store.", nil, nil)
	descFailBlocked = prometheus.NewDesc("keygate_failed_attempts_blocked_total",
		"Requests refused because their client sent too many invalid keys.", nil, nil)
	descInvalidationLag = prometheus.NewDesc("keygate_invalidation_lag_seconds",
		"Time from the newest applied change's commit to its eviction here (Postgres change feed).", nil, nil)
	descResyncs = prometheus.NewDesc("keygate_change_feed_resyncs_total",
		"Change-log replays after the LISTEN connection was re-established.", nil, nil)
	descFeedConnected = prometheus.NewDesc("keygate_change_feed_connected",
		"1 when the LISTEN connection of the change feed is up.", nil, nil)
	descWebhookDeliveries = prometheus.NewDesc("keygate_webhook_deliveries_total",
		"Webhook delivery attempts by this instance, by result (delivered, failed).", []string{"result"}, nil)
	descWebhookPending = prometheus.NewDesc("keygate_webhook_pending",
		"Webhook deliveries in the store's outbox not yet delivered (all instances).", nil, nil)
)

// newHistograms returns the histograms kept by the pooled resources.
func newHistograms() (lookup, flush prometheus.Histogram) {
	lookup = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "keygate_store_lookup_duration_seconds",
		Help:    "Duration of store lookups for cache misses.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	})
	flush = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "keygate_meter_flush_duration_seconds",
		Help:    "Duration of usage flushes to the store.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	})
	return lookup, flush
}

// collector exposes the resources' counters.
type collector struct{ res *resources }

// Describe lists every descriptor Collect may ever send. It must not be
// derived from Collect (prometheus.DescribeByCollect): the collector is
// registered in Provision, before Start opens the store, when Collect sends
// only keygate_requests_total; every metric added later would then be
// "collected with unregistered descriptor" and fail the whole /metrics
// scrape with 500.
func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descRequests, descCacheHits, descCacheMisses, descStoreErrors, descStaleServed,
		descPending, descFailBlocked, descInvalidationLag, descResyncs, descFeedConnected,
		descWebhookDeliveries, descWebhookPending,
	} {
		ch <- d
	}
	c.res.lookupHist.Describe(ch)
	c.res.flushHist.Describe(ch)
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	r := c.res
	counts := r.outcomes.byResult()
	for _, name := range resultNames {
		ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(counts[name]), name)
	}
	if !r.opened() {
		return
	}
	st := r.auth.Stats()
	ch <- prometheus.MustNewConstMetric(descCacheHits, prometheus.CounterValue, float64(st.Hits))
	ch <- prometheus.MustNewConstMetric(descCacheMisses, prometheus.CounterValue, float64(st.Misses))
	ch <- prometheus.MustNewConstMetric(descStoreErrors, prometheus.CounterValue, float64(st.LookupErrors))
	ch <- prometheus.MustNewConstMetric(descStaleServed, prometheus.CounterValue, float64(st.StaleServed))
	ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(r.meter.PendingTotal()))
	ch <- prometheus.MustNewConstMetric(descFailBlocked, prometheus.CounterValue, float64(r.blockedTotal()))
	r.lookupHist.Collect(ch)
	r.flushHist.Collect(ch)
	ch <- prometheus.MustNewConstMetric(descWebhookDeliveries, prometheus.CounterValue, float64(r.webhooks.delivered.Load()), "delivered")
	ch <- prometheus.MustNewConstMetric(descWebhookDeliveries, prometheus.CounterValue, float64(r.webhooks.failed.Load()), "failed")
	ch <- prometheus.MustNewConstMetric(descWebhookPending, prometheus.GaugeValue, float64(r.webhooks.pending.Load()))
	if r.listener != nil {
		ls := r.listener.Stats()
		ch <- prometheus.MustNewConstMetric(descInvalidationLag, prometheus.GaugeValue, ls.Lag.Seconds())
		ch <- prometheus.MustNewConstMetric(descResyncs, prometheus.CounterValue, float64(ls.Resyncs))
		connected := 0.0
		if ls.Connected {
			connected = 1
		}
		ch <- prometheus.MustNewConstMetric(descFeedConnected, prometheus.GaugeValue, connected)
	}
}

// registerMetrics adds the collector to the config's registry; a registry
// that already has it (same config provisioned twice) is fine.
func registerMetrics(reg *prometheus.Registry, res *resources) error {
	if reg == nil {
		return nil
	}
	err := reg.Register(collector{res})
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		return nil
	}
	return err
}

func observe(h prometheus.Histogram) func(time.Duration, error) {
	return func(d time.Duration, _ error) { h.Observe(d.Seconds()) }
}
