package keystore

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// Hot-path benchmarks for the Meter and the Limiter; run with -benchmem.
// Both target 0 allocs/op.

func BenchmarkMeterCountParallel(b *testing.B) {
	for _, nkeys := range []int{1, 1000} {
		b.Run(fmt.Sprintf("keys=%d", nkeys), func(b *testing.B) {
			m := NewMeter(newUsageStore(), MeterOptions{})
			ids := make([]string, nkeys)
			now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
			for i := range ids {
				ids[i] = fmt.Sprintf("key_%020d", i)
				m.Count(ids[i], now)
			}
			var seq atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(seq.Add(1)) * 7919
				for pb.Next() {
					m.Count(ids[i%nkeys], now)
					i++
				}
			})
			b.StopTimer()
			if err := m.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
		})
	}
}

func BenchmarkLimiterAdmit(b *testing.B) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	huge := int64(1) << 40
	cases := []struct {
		name string
		opts LimiterOptions
		key  *Key
	}{
		{"none", LimiterOptions{}, &Key{ID: "key_a"}},
		{"rate", LimiterOptions{}, rateKey("key_a", huge, time.Second)},
		{"default_rate", LimiterOptions{DefaultRate: &Rate{Limit: huge, Per: time.Second}}, &Key{ID: "key_a"}},
		{"quota", LimiterOptions{}, quotaKey("key_a", huge, PeriodMonth)},
		{"rate_and_quota", LimiterOptions{}, &Key{ID: "key_a", Rate: &Rate{Limit: huge, Per: time.Second},
			Quota: &Quota{Limit: huge, Period: PeriodDay}}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			s := newUsageStore()
			m := NewMeter(s, MeterOptions{})
			c.opts.Store, c.opts.Meter = s, m
			c.opts.QuotaRefresh = time.Hour // steady state: no store reads
			l := NewLimiter(c.opts)
			l.Admit(c.key, now)
			m.Count(c.key.ID, now)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if d := l.Admit(c.key, now); !d.Allowed {
					b.Fatalf("got %+v, want allowed", d)
				}
			}
		})
	}
}
