package keystore_test

import (
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

// Benchmarks of the offline key checks on the request path (docs/design.md §1 step
// 2): PlausibleKey runs on every request before the cache, so a malformed
// key must be refused in nanoseconds and without allocating.
//
//	go test ./keystore -run '^$' -bench 'Key|Checksum|Digest' -benchmem

var sinkBool bool

func benchKeys(b *testing.B) (valid, badChecksum, imported string) {
	b.Helper()
	valid, err := keystore.GenerateKey(keystore.DefaultPrefix)
	if err != nil {
		b.Fatal(err)
	}
	last := byte('A')
	if valid[len(valid)-1] == last {
		last = 'B'
	}
	badChecksum = valid[:len(valid)-1] + string(last)
	imported = "Imported-Maximo-Key:" + strings.Repeat("x7Q", 12)
	return valid, badChecksum, imported
}

func BenchmarkGenerateKey(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := keystore.GenerateKey(keystore.DefaultPrefix); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPlausibleKey(b *testing.B) {
	valid, badChecksum, imported := benchKeys(b)
	cases := []struct {
		name string
		key  string
		want bool
	}{
		{"valid", valid, true},
		{"bad_checksum", badChecksum, false},
		{"imported", imported, true},
		{"too_short", "kg_short", false},
		{"garbage_64", strings.Repeat("?", 64), true}, // printable: could be imported
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkBool = keystore.PlausibleKey(c.key)
			}
			if sinkBool != c.want {
				b.Fatalf("PlausibleKey(%q): got %v, want %v", c.key, sinkBool, c.want)
			}
		})
	}
}

func BenchmarkChecksumValid(b *testing.B) {
	valid, badChecksum, _ := benchKeys(b)
	for _, c := range []struct {
		name, key string
		want      bool
	}{{"valid", valid, true}, {"bad", badChecksum, false}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkBool = keystore.ChecksumValid(c.key)
			}
			if sinkBool != c.want {
				b.Fatalf("ChecksumValid: got %v, want %v", sinkBool, c.want)
			}
		})
	}
}

var sinkDigest keystore.Digest

func BenchmarkDigestOf(b *testing.B) {
	valid, _, _ := benchKeys(b)
	b.ReportAllocs()
	for b.Loop() {
		sinkDigest = keystore.DigestOf(valid)
	}
}
