package keystore

import (
	"hash/crc32"
	"net/url"
	"path"
	"slices"
	"strings"
	"testing"
)

// The fuzz targets below run their seed corpus (f.Add and
// testdata/fuzz/<Name>) as ordinary tests; .ci/fuzz runs them with -fuzz
// for a bounded time.

// refChecksumValid is an independent reading of docs/design.md §2's key format:
// <1–8 alnum>_<32 base62><6 base62 digits of CRC32(everything before)>.
func refChecksumValid(key string) bool {
	prefix, body, ok := strings.Cut(key, "_")
	if !ok || len(prefix) < 1 || len(prefix) > 8 || len(body) != 38 {
		return false
	}
	for _, c := range []byte(prefix + body) {
		if !strings.ContainsRune(base62Ref, rune(c)) {
			return false
		}
	}
	// Decode the 6 checksum digits as a base-62 number.
	var v uint64
	for _, c := range []byte(body[32:]) {
		v = v*62 + uint64(strings.IndexByte(base62Ref, c))
	}
	return v == uint64(crc32.ChecksumIEEE([]byte(key[:len(key)-6])))
}

const base62Ref = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// FuzzPlausibleKey checks the offline key checks on arbitrary input (never
// panic, agree with an independent reading of the format) and that a
// generated key with any one byte changed is rejected.
func FuzzPlausibleKey(f *testing.F) {
	f.Add("kg_0000000000000000000000000000000000000", "kg", uint16(0), byte('A'))
	f.Add("", "kg", uint16(3), byte('0'))
	f.Add("kg_notavalidkey", "X1", uint16(40), byte('_'))
	f.Add(strings.Repeat("a", 32), "abcdefgh", uint16(2), byte(0x80))
	f.Add("Zx9$Qw3!Lm7@Rt5#Yu1%Io8^Pa2&Sd6*", "kg", uint16(45), byte(' '))
	f.Add("_"+strings.Repeat("A", 38), "", uint16(10), byte('z'))
	f.Fuzz(func(t *testing.T, s, prefix string, pos uint16, b byte) {
		plausible := PlausibleKey(s)
		valid := ChecksumValid(s)
		looks := LooksGenerated(s)
		_ = DisplayStart(s)
		_ = CheckImportStrength(s)
		if want := refChecksumValid(s); valid != want {
			t.Fatalf("ChecksumValid(%q) = %v, reference says %v", s, valid, want)
		}
		if valid && (!looks || !plausible) {
			t.Fatalf("%q: checksum valid but LooksGenerated=%v PlausibleKey=%v", s, looks, plausible)
		}
		if looks && plausible != valid {
			t.Fatalf("%q looks generated: PlausibleKey=%v but ChecksumValid=%v", s, plausible, valid)
		}
		if plausible && (len(s) < MinImportLen || len(s) > MaxKeyLen) {
			t.Fatalf("PlausibleKey accepted a %d-byte key", len(s))
		}
		if valid && CheckImportStrength(s) != nil && strings.Contains(CheckImportStrength(s).Error(), "checksum") {
			t.Fatalf("%q: valid checksum but import says it is wrong", s)
		}

		if ValidatePrefix(prefix) != nil {
			prefix = DefaultPrefix
		}
		key, err := GenerateKey(prefix)
		if err != nil {
			t.Fatal(err)
		}
		if !ChecksumValid(key) || !PlausibleKey(key) || !refChecksumValid(key) {
			t.Fatalf("generated key %q is rejected", key)
		}
		if ds := DisplayStart(key); ds != key[:len(prefix)+5] {
			t.Fatalf("DisplayStart(%q) = %q", key, ds)
		}
		i := int(pos) % len(key)
		if key[i] == b {
			return
		}
		mut := []byte(key)
		mut[i] = b
		m := string(mut)
		if ChecksumValid(m) {
			t.Fatalf("key %q with byte %d changed to %q still has a valid checksum: %q", key, i, b, m)
		}
		if LooksGenerated(m) && PlausibleKey(m) {
			t.Fatalf("key %q with byte %d changed to %q is still plausible: %q", key, i, b, m)
		}
	})
}

// FuzzChecksumValid compares ChecksumValid with the reference on keys whose
// checksum digits are fuzzed, so that valid and nearly valid inputs are
// common (FuzzPlausibleKey mostly sees invalid ones).
func FuzzChecksumValid(f *testing.F) {
	f.Add("kg", "0123456789abcdefghijABCDEFGHIJkl", "")
	f.Add("abcdefgh", "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ", "zzzzzz")
	f.Add("k", "00000000000000000000000000000000", "000000")
	f.Fuzz(func(t *testing.T, prefix, random, sum string) {
		key := prefix + "_" + random
		var want [checksumLen]byte
		putChecksum(want[:], crc32.ChecksumIEEE([]byte(key)))
		if sum == "" {
			sum = string(want[:])
		}
		full := key + sum
		got, ref := ChecksumValid(full), refChecksumValid(full)
		if got != ref {
			t.Fatalf("ChecksumValid(%q) = %v, reference says %v", full, got, ref)
		}
		if LooksGenerated(full) && PlausibleKey(full) != got {
			t.Fatalf("PlausibleKey(%q) = %v, ChecksumValid %v", full, PlausibleKey(full), got)
		}
	})
}

// refAreas is the area configuration of FuzzAreaAllowed: the key under test
// holds rights on "assets" only.
var refAreas = map[string][]string{
	"assets":     {"/maximo/oslc/os/mxapiasset*", "/maximo/api/os/MXASSET*", "*/assetreport", "/maximo/exact/status"},
	"workorders": {"/maximo/oslc/os/mxapiwodetail*", "*wo*", "/"},
	"all":        {"*"},
}

// refMatch is a simple reference of Caddy's path matcher as docs/design.md §1 asks
// for: both sides lower-cased (strings.ToLower, as caddyhttp.MatchPath
// does), then prefix, suffix, substring or exact comparison.
func refMatch(pattern, p string) bool {
	pattern, p = strings.ToLower(pattern), strings.ToLower(p)
	starts, ends := strings.HasPrefix(pattern, "*"), strings.HasSuffix(pattern, "*")
	text := strings.Trim(pattern, "*")
	switch {
	case pattern == "*" || (text == "" && (starts || ends)):
		return true
	case starts && ends:
		return strings.Contains(p, text)
	case ends:
		return strings.HasPrefix(p, text)
	case starts:
		return strings.HasSuffix(p, text)
	default:
		return p == text
	}
}

// refClean decodes and cleans a request target's path as a server would:
// url.ParseRequestURI (which decodes %2F into "/"), then path.Clean.
func refClean(target string) (string, bool) {
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return "", false
	}
	p := u.Path
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return path.Clean(p), true
}

// FuzzAreaAllowed checks that a key with rights on one area is allowed
// exactly on the paths that area's patterns match after decoding and
// cleaning, whatever "..", "//", "%2F" or case tricks the path uses; and
// never on a path in no area, even with the wildcard.
func FuzzAreaAllowed(f *testing.F) {
	for _, s := range []string{
		"/maximo/oslc/os/mxapiasset", "/MAXIMO/OSLC/OS/MXAPIASSET/123",
		"/maximo/oslc/os/mxapiasset/../mxapiwodetail", "/maximo/oslc/os/mxapiasset%2F..%2Fmxapiwodetail",
		"/maximo//oslc/os/mxapiasset", "//maximo/oslc/os/mxapiasset", "/maximo/oslc/os/./mxapiasset",
		"/maximo/oslc/os/mxapiasset/%2e%2e/mxapiwodetail", "/maximo/oslc/os/MxApIaSsEt?x=../y",
		"/maximo/api/os/mxasset", "/x/y/assetreport", "/x/y/AssetReport/..", "/maximo/exact/status",
		"/maximo/exact/status/", "/maximo/exact/ſtatus", "/maximo/exact/\u212aey", "/../../etc/passwd",
		"/maximo/oslc/os/mxapiasset%00", "/maximo/oslc/os/mxapiasset\\..\\mxapiwodetail", "*",
	} {
		f.Add(s, "")
		f.Add(s, "/maximo/oslc/os/mxapi*")
	}
	f.Add("/maximo/STATUS", "/maximo/status")
	f.Add("/a/b/c", "*b*")
	f.Add("/a/İ", "/a/i̇*")
	f.Fuzz(func(t *testing.T, target, extra string) {
		defs := map[string][]string{}
		for k, v := range refAreas {
			defs[k] = slices.Clone(v)
		}
		if extra != "" {
			defs["assets"] = append(defs["assets"], extra)
		}
		areas, err := NewAreas(defs)
		if err != nil {
			return // the extra pattern is not valid; NewAreas said so
		}
		clean, ok := refClean(target)
		if !ok {
			return
		}
		if got := CleanPath(clean); got != clean {
			t.Fatalf("CleanPath(%q) = %q, want it unchanged (idempotent)", clean, got)
		}
		if strings.Contains(clean, "//") || strings.Contains(clean, "/../") || strings.HasSuffix(clean, "/..") || clean[0] != '/' {
			t.Fatalf("cleaned path %q still has // or .. or no leading slash", clean)
		}
		inAssets := false
		for _, p := range defs["assets"] {
			if refMatch(p, clean) {
				inAssets = true
			}
		}
		// Allowed outside the area is an escape. Refused inside it is a
		// bug only for ASCII: with non-ASCII paths or patterns the matcher
		// may be stricter than strings.ToLower (fail closed).
		ascii := isASCII(clean) && isASCII(extra)
		check := func(rights Rights, level Level, want bool) {
			t.Helper()
			_, ok := areas.Allowed(&rights, clean, level)
			if ok && !want {
				t.Fatalf("escape: %v key, path %q (cleaned %q), need %v: allowed, but the path is outside its area", rights.Strings(), target, clean, level)
			}
			if !ok && want && ascii {
				t.Fatalf("%v key, path %q (cleaned %q), need %v: refused, but the path is in its area", rights.Strings(), target, clean, level)
			}
		}
		for _, level := range []Level{LevelRead, LevelWrite} {
			check(Rights{Areas: map[string]Level{"assets": LevelWrite}}, level, inAssets)
			check(Rights{Areas: map[string]Level{"assets": LevelRead}}, level, inAssets && level == LevelRead)
			if _, ok := areas.Allowed(&Rights{Areas: map[string]Level{}}, clean, level); ok {
				t.Fatalf("a key without rights is allowed on %q", clean)
			}
		}
		// The wildcard grants configured areas only.
		wide := Rights{Areas: map[string]Level{AllAreas: LevelWrite}}
		if _, ok := areas.Allowed(&wide, "/", LevelWrite); !ok {
			t.Fatalf("*:write not allowed on / although the workorders area holds /")
		}
	})
}

// FuzzParseRights checks that rights lists never panic the parser, that a
// parsed list round-trips through Strings, and that it covers each of its
// own items (no escalation by combining items).
func FuzzParseRights(f *testing.F) {
	for _, s := range []string{
		"assets:read", "assets:read,workorders:write", "*:read", "*:write,keys:admin", "keys:self",
		"keys:read", "assets:READ", "assets", ":read", "assets:read:write", "*:admin", "assets:write,assets:read",
		"", ",", "unknown:read", "keys:admin,keys:self,*:read", "a\x00:read", "assets :read",
	} {
		f.Add(s)
	}
	known := func(a string) bool { return a == "assets" || a == "workorders" }
	f.Fuzz(func(t *testing.T, s string) {
		list := strings.Split(s, ",")
		r, err := ParseRights(list, nil)
		rk, errk := ParseRights(list, known)
		if err != nil {
			if errk == nil {
				t.Fatalf("%q: rejected without an area check but accepted with one", list)
			}
			return
		}
		for area, l := range r.Areas {
			if l != LevelRead && l != LevelWrite {
				t.Fatalf("%q: area %q has level %v", list, area, l)
			}
			if area == "" || area == "keys" {
				t.Fatalf("%q: parsed area %q", list, area)
			}
			if errk == nil && area != AllAreas && !known(area) {
				t.Fatalf("%q: unknown area %q accepted by the area check", list, area)
			}
		}
		if r.Admin != slices.Contains(list, RightKeysAdmin) || r.Self != slices.Contains(list, RightKeysSelf) {
			t.Fatalf("%q: admin=%v self=%v", list, r.Admin, r.Self)
		}
		if errk == nil && !rk.Covers(r) && !r.Covers(rk) {
			t.Fatalf("%q: the area check changed the result", list)
		}
		again, err := ParseRights(r.Strings(), nil)
		if err != nil {
			t.Fatalf("%q: canonical form %q does not parse: %v", list, r.Strings(), err)
		}
		if !slices.Equal(again.Strings(), r.Strings()) {
			t.Fatalf("%q: round trip %q → %q", list, r.Strings(), again.Strings())
		}
		if !r.Covers(r) {
			t.Fatalf("%q: does not cover itself", list)
		}
		for _, item := range list {
			one, err := ParseRights([]string{item}, nil)
			if err != nil {
				t.Fatalf("%q accepted as a list but item %q rejected: %v", list, item, err)
			}
			if !r.Covers(one) {
				t.Fatalf("%q does not cover its own item %q", list, item)
			}
			for area, l := range one.Areas {
				if r.Level(area) < l {
					t.Fatalf("%q: level of %q is %v, below its item %q", list, area, r.Level(area), item)
				}
			}
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
