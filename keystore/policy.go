package keystore

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Per-key policy beyond rights: where a key may be used from (AllowedIPs)
// and which handlers accept it (Environments), and the bounds a keys:self
// key puts on the keys it creates (docs/design.md §2 and §4).

const (
	// MaxAllowedIPs bounds a key's allowed_ips list.
	MaxAllowedIPs = 100
	// MaxEnvironments bounds a key's environments list.
	MaxEnvironments = 20
	maxEnvNameLen   = 64
)

// ParseAllowedIPs validates allowed_ips entries (IPv4/IPv6 addresses and
// CIDR prefixes) and returns them canonical: a lone address becomes a /32 or
// /128, IPv4-mapped IPv6 addresses become IPv4, duplicates are dropped. A
// prefix with host bits set is refused rather than silently widened or
// narrowed: the operator meant something, and keygate cannot tell what.
func ParseAllowedIPs(list []string) ([]string, error) {
	if len(list) > MaxAllowedIPs {
		return nil, invalidf("allowed_ips has %d entries; at most %d are allowed", len(list), MaxAllowedIPs)
	}
	var out []string
	for _, e := range list {
		p, err := parseAllowedIP(e)
		if err != nil {
			return nil, err
		}
		if s := p.String(); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

func parseAllowedIP(e string) (netip.Prefix, error) {
	s := strings.TrimSpace(e)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, invalidf("allowed_ips entry %q is not an IP address or CIDR prefix such as 192.0.2.0/24 or 2001:db8::/48", e)
		}
		if p.Addr().Is4In6() {
			bits := p.Bits() - 96
			if bits < 0 {
				return p, invalidf("allowed_ips entry %q is an IPv4-mapped prefix shorter than /96", e)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), bits)
		}
		if p.Masked() != p {
			return p, invalidf("allowed_ips entry %q has host bits set; did you mean %s?", e, p.Masked())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, invalidf("allowed_ips entry %q is not an IP address or CIDR prefix such as 192.0.2.0/24 or 2001:db8::/48", e)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ValidateEnvironments checks environment names (letters, digits, '-',
// '_' and '.', at most 64 bytes) and drops duplicates.
func ValidateEnvironments(list []string) ([]string, error) {
	if len(list) > MaxEnvironments {
		return nil, invalidf("environments has %d entries; at most %d are allowed", len(list), MaxEnvironments)
	}
	var out []string
	for _, e := range list {
		if err := ValidEnvironmentName(e); err != nil {
			return nil, invalidf("environments: %v", err)
		}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out, nil
}

// ValidEnvironmentName checks one environment name, as keys and the
// handler's environment option spell it.
func ValidEnvironmentName(e string) error {
	if e == "" || len(e) > maxEnvNameLen {
		return fmt.Errorf("environment name %q must be 1 to %d characters long", e, maxEnvNameLen)
	}
	for _, c := range []byte(e) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("environment name %q may hold only letters, digits, '-', '_' and '.'", e)
		}
	}
	return nil
}

// addrPolicy is a key's allowed_ips, parsed once when the key is loaded.
type addrPolicy struct {
	prefixes []netip.Prefix
	// denyAll is set when a stored entry does not parse: such a key works
	// from nowhere rather than from anywhere.
	denyAll bool
}

func newAddrPolicy(list []string) addrPolicy {
	var ap addrPolicy
	for _, e := range list {
		p, err := parseAllowedIP(e)
		if err != nil {
			ap.denyAll = true
			continue
		}
		ap.prefixes = append(ap.prefixes, p)
	}
	return ap
}

// AllowsClient reports whether the key may be used from client, an IP
// address as Caddy reports it. Keys without allowed_ips allow every client
// without parsing anything.
func (p *Principal) AllowsClient(client string) bool {
	if len(p.profile.addrs.prefixes) == 0 && !p.profile.addrs.denyAll {
		return true
	}
	a, err := netip.ParseAddr(client)
	if err != nil {
		return false
	}
	a = a.WithZone("").Unmap()
	for _, pre := range p.profile.addrs.prefixes {
		if pre.Contains(a) {
			return true
		}
	}
	return false
}

// AcceptedIn reports whether a handler of environment env accepts the key:
// a handler with an environment only keys that list it, a handler without
// one only keys that list none.
func (k *Key) AcceptedIn(env string) bool { return acceptedIn(k.Environments, env) }

func acceptedIn(environments []string, env string) bool {
	if env == "" {
		return len(environments) == 0
	}
	return slices.Contains(environments, env)
}

// ---- self-service bounds ----

// boundChild makes a key created by a keys:self key no looser than its
// creator: limits and expiry the child does not set are inherited, and
// those it sets must lie within the creator's (else a 400 saying which).
// Admins are not bounded.
func boundChild(parent, child *Key, now time.Time) error {
	if parent.Rate != nil {
		switch {
		case child.Rate == nil:
			r := *parent.Rate
			child.Rate = &r
		case looserRate(child.Rate, parent.Rate):
			return invalidf("rate %d/%s is looser than this key's own rate %d/%s; a keys:self key cannot create keys with more than it has",
				child.Rate.Limit, FormatDuration(child.Rate.Per), parent.Rate.Limit, FormatDuration(parent.Rate.Per))
		}
	}
	if parent.Quota != nil {
		switch {
		case child.Quota == nil:
			q := *parent.Quota
			child.Quota = &q
		case looserQuota(child.Quota, parent.Quota):
			return invalidf("quota %d per %s is looser than this key's own quota %d per %s; a keys:self key cannot create keys with more than it has",
				child.Quota.Limit, child.Quota.Period, parent.Quota.Limit, parent.Quota.Period)
		}
	}
	if parent.ExpiresAt != nil {
		switch {
		case child.ExpiresAt == nil:
			t := *parent.ExpiresAt
			child.ExpiresAt = &t
		case child.ExpiresAt.After(*parent.ExpiresAt):
			return invalidf("expiry %s is later than this key's own expiry %s", child.ExpiresAt.UTC().Format(time.RFC3339), parent.ExpiresAt.UTC().Format(time.RFC3339))
		}
	}
	if len(parent.AllowedIPs) > 0 {
		if len(child.AllowedIPs) == 0 {
			child.AllowedIPs = cloneStrings(parent.AllowedIPs)
		}
		within := newAddrPolicy(parent.AllowedIPs)
		for _, e := range child.AllowedIPs {
			if !within.covers(e) {
				return invalidf("allowed_ips entry %s is outside this key's own allowed_ips (%s)", e, strings.Join(parent.AllowedIPs, ", "))
			}
		}
	}
	for _, e := range child.Environments {
		if !slices.Contains(parent.Environments, e) {
			if len(parent.Environments) == 0 {
				return invalidf("environment %q: this key is for handlers without an environment and cannot create keys for one", e)
			}
			return invalidf("environment %q is not one of this key's own environments (%s)", e, strings.Join(parent.Environments, ", "))
		}
	}
	if len(child.Environments) == 0 {
		child.Environments = cloneStrings(parent.Environments)
	}
	return nil
}

// covers reports whether the prefix e lies inside one of ap's prefixes.
func (ap addrPolicy) covers(e string) bool {
	p, err := parseAllowedIP(e)
	if err != nil || ap.denyAll {
		return false
	}
	for _, q := range ap.prefixes {
		if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// looserRate reports whether c admits more than p: a larger burst (GCRA
// admits Limit requests at once) or a higher sustained rate.
func looserRate(c, p *Rate) bool {
	if c.Limit > p.Limit {
		return true
	}
	// c.Limit/c.Per > p.Limit/p.Per, in integers (limits and durations
	// stay far below the overflow of their product in float64 terms).
	return float64(c.Limit)*float64(p.Per) > float64(p.Limit)*float64(c.Per)
}

// looserQuota reports whether c admits more than p in some calendar period.
// A day quota is no looser than a month quota when 31 days of it fit in the
// month; a month quota no looser than a day quota when it fits in one day.
func looserQuota(c, p *Quota) bool {
	switch {
	case c.Period == p.Period:
		return c.Limit > p.Limit
	case c.Period == "day": // parent: month
		return c.Limit*31 > p.Limit
	default: // child month, parent day
		return c.Limit > p.Limit
	}
}
