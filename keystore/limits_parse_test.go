package keystore_test

import (
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

func TestParseRateText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    keystore.Rate
		wantErr string
	}{
		{name: "per minute", in: "100/1m", want: keystore.Rate{Limit: 100, Per: time.Minute}},
		{name: "compound duration", in: "1000/1h30m", want: keystore.Rate{Limit: 1000, Per: 90 * time.Minute}},
		{name: "no slash", in: "100", wantErr: "want <requests>/<duration>"},
		{name: "empty", in: "", wantErr: "want <requests>/<duration>"},
		{name: "zero", in: "0/1m", wantErr: "positive whole number"},
		{name: "fraction", in: "1.5/1m", wantErr: "positive whole number"},
		{name: "spaces are not trimmed", in: " 100/1m", wantErr: "positive whole number"},
		{name: "bare unit", in: "10/s", wantErr: "duration such as"},
		{name: "days are not a unit", in: "100/1d", wantErr: "duration such as"},
		{name: "two slashes", in: "100/1m/2", wantErr: "duration such as"},
		{name: "zero duration", in: "100/0s", wantErr: "must be positive"},
		{name: "negative duration", in: "100/-1m", wantErr: "must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := keystore.ParseRateText(tt.in)
			checkLimitParse(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func TestParseQuotaText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    keystore.Quota
		wantErr string
	}{
		{name: "month", in: "10000/month", want: keystore.Quota{Limit: 10000, Period: keystore.PeriodMonth}},
		{name: "day", in: "500/day", want: keystore.Quota{Limit: 500, Period: keystore.PeriodDay}},
		{name: "no slash", in: "10000", wantErr: "want <requests>/day"},
		{name: "negative", in: "-1/month", wantErr: "positive whole number"},
		{name: "upper case", in: "500/DAY", wantErr: "day or month"},
		{name: "duration", in: "100/24h", wantErr: "day or month"},
		{name: "empty period", in: "100/", wantErr: "day or month"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := keystore.ParseQuotaText(tt.in)
			checkLimitParse(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func checkLimitParse[T comparable](t *testing.T, got T, err error, want T, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("got %+v, error %v, want an error containing %q", got, err, wantErr)
		}
		return
	}
	if err != nil || got != want {
		t.Fatalf("got %+v, error %v, want %+v", got, err, want)
	}
}
