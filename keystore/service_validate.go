package keystore

import (
	"context"
	"errors"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ---- validation ----

func checkAdminText(field, v string, max int, required bool) error {
	if required && strings.TrimSpace(v) == "" {
		return invalidf("%s is required", field)
	}
	if len(v) > max {
		return invalidf("%s is %d bytes long; at most %d are allowed", field, len(v), max)
	}
	if !utf8.ValidString(v) {
		return invalidf("%s must be valid UTF-8", field)
	}
	for _, c := range v {
		if unicode.IsControl(c) && (field != "description" || c != '\n' && c != '\t' && c != '\r') {
			return invalidf("%s must not contain control characters", field)
		}
	}
	return nil
}

func (s *Service) parseRights(list []string) (Rights, error) {
	if len(list) > maxRights {
		return Rights{}, invalidf("rights has %d entries; at most %d are allowed", len(list), maxRights)
	}
	r, err := ParseRights(list, s.areaKnown())
	if err != nil {
		msg := err.Error()
		if _, ok := errors.AsType[*UnknownAreaError](err); ok {
			msg += "; " + s.Areas.configured()
		}
		return r, &ServiceError{Kind: KindInvalid, Message: msg}
	}
	return r, nil
}

// ParseRate validates a rate limit: limit > 0 and per a positive Go duration.
func ParseRate(r RateSpec) (*Rate, error) {
	if r.Limit <= 0 {
		return nil, invalidf("rate.limit must be greater than 0, got %d", r.Limit)
	}
	if r.Per == "" {
		return nil, invalidf(`rate.per is required: a Go duration such as "1s" or "1m"`)
	}
	d, err := time.ParseDuration(r.Per)
	if err != nil {
		return nil, invalidf(`rate.per %q is not a Go duration such as "1s" or "1m"`, r.Per)
	}
	if d <= 0 {
		return nil, invalidf("rate.per must be positive, got %q", r.Per)
	}
	return &Rate{Limit: r.Limit, Per: d}, nil
}

// ValidateQuota validates a quota: limit > 0 and period day or month.
func ValidateQuota(q Quota) (*Quota, error) {
	if q.Limit <= 0 {
		return nil, invalidf("quota.limit must be greater than 0, got %d", q.Limit)
	}
	if q.Period != "day" && q.Period != "month" {
		return nil, invalidf(`quota.period must be "day" or "month", got %q`, q.Period)
	}
	return &q, nil
}

func parseExpiresAt(v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return t, invalidf("expires_at %q is not an RFC 3339 time such as 2026-12-31T23:59:59Z", v)
	}
	return t.UTC().Truncate(time.Second), nil
}

// specKey validates the create fields and returns the key to store
// (without id, digest and start) and the audit details.
func (s *Service) specKey(ctx context.Context, a Actor, spec KeySpec, now time.Time) (*Key, map[string]any, error) {
	if err := checkAdminText("name", spec.Name, maxNameLen, true); err != nil {
		return nil, nil, err
	}
	if err := checkAdminText("description", spec.Description, maxDescriptionLen, false); err != nil {
		return nil, nil, err
	}
	if err := checkAdminText("user", spec.User, maxUserLen, true); err != nil {
		return nil, nil, err
	}
	rights, err := s.parseRights(spec.Rights)
	if err != nil {
		return nil, nil, err
	}
	if err := s.mayGrant(a, spec.User, rights); err != nil {
		return nil, nil, err
	}
	k := &Key{
		Name:        spec.Name,
		Description: spec.Description,
		User:        spec.User,
		Rights:      rights.Strings(),
		CreatedAt:   now,
		CreatedBy:   a.ID,
	}
	switch {
	case spec.ExpiresAt != "" && spec.ExpiresIn != "":
		return nil, nil, invalidf("give expires_at or expires_in, not both")
	case spec.ExpiresAt != "":
		t, err := parseExpiresAt(spec.ExpiresAt)
		if err != nil {
			return nil, nil, err
		}
		if !t.After(now) {
			return nil, nil, invalidf("expires_at %s is not in the future", spec.ExpiresAt)
		}
		k.ExpiresAt = &t
	case spec.ExpiresIn != "":
		d, err := time.ParseDuration(spec.ExpiresIn)
		if err != nil {
			return nil, nil, invalidf(`expires_in %q is not a Go duration such as "720h"`, spec.ExpiresIn)
		}
		if d < time.Second {
			return nil, nil, invalidf("expires_in must be at least 1s, got %q", spec.ExpiresIn)
		}
		t := now.Add(d)
		k.ExpiresAt = &t
	}
	if spec.Rate != nil {
		if k.Rate, err = ParseRate(*spec.Rate); err != nil {
			return nil, nil, err
		}
	}
	if spec.Quota != nil {
		if k.Quota, err = ValidateQuota(*spec.Quota); err != nil {
			return nil, nil, err
		}
	}
	if k.AllowedIPs, err = ParseAllowedIPs(spec.AllowedIPs); err != nil {
		return nil, nil, err
	}
	if k.Environments, err = ValidateEnvironments(spec.Environments); err != nil {
		return nil, nil, err
	}
	if !a.admin() {
		parent, err := s.actingKey(ctx, a, now)
		if err != nil {
			return nil, nil, err
		}
		if err := boundChild(parent, k, now); err != nil {
			return nil, nil, err
		}
	}
	return k, keyDetails(k), nil
}
