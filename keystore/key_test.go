package keystore

import (
	"regexp"
	"strings"
	"testing"
)

var keyShape = regexp.MustCompile(`^kg_[0-9A-Za-z]{38}$`)

func TestGenerateKeyFormat(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		k, err := GenerateKey("kg")
		if err != nil {
			t.Fatal(err)
		}
		if !keyShape.MatchString(k) {
			t.Fatalf("key %q does not have the documented shape", k)
		}
		if !ChecksumValid(k) || !PlausibleKey(k) || !LooksGenerated(k) {
			t.Fatalf("a generated key fails its own checks: %q", k)
		}
		if seen[k] {
			t.Fatalf("duplicate key after %d", i)
		}
		seen[k] = true
		if got := DisplayStart(k); got != k[:7] {
			t.Fatalf("DisplayStart: got %q, want %q", got, k[:7])
		}
	}
}

func TestGenerateKeyPrefix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		prefix  string
		wantErr bool
	}{
		{"default", "kg", false},
		{"eight", "acme2026", false},
		{"upper", "MX", false},
		{"empty", "", true},
		{"nine", "abcdefghi", true},
		{"dash", "kg-x", true},
		{"underscore", "kg_x", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := GenerateKey(tc.prefix)
			if (err != nil) != tc.wantErr {
				t.Fatalf("got error %v, want error %v", err, tc.wantErr)
			}
			if err == nil && (!strings.HasPrefix(k, tc.prefix+"_") || !ChecksumValid(k)) {
				t.Fatalf("key %q for prefix %q is wrong", k, tc.prefix)
			}
		})
	}
}

// TestChecksumCatchesEveryMutation: in 100,000 generated keys, changing any
// one character of the random part or the checksum to any other base62
// character is always detected.
func TestChecksumCatchesEveryMutation(t *testing.T) {
	t.Parallel()
	const n = 100_000
	for i := 0; i < n; i++ {
		k, err := GenerateKey("kg")
		if err != nil {
			t.Fatal(err)
		}
		b := []byte(k)
		pos := 3 + i%bodyLen // every position of the body, in turn
		orig := b[pos]
		for _, c := range []byte{base62[(strings.IndexByte(base62, orig)+1+i%61)%62]} {
			if c == orig {
				continue
			}
			b[pos] = c
			if ChecksumValid(string(b)) || PlausibleKey(string(b)) {
				t.Fatalf("mutated key %q (position %d) passes the checksum", b, pos)
			}
		}
	}
}

func TestPlausibleKey(t *testing.T) {
	t.Parallel()
	valid, _ := GenerateKey("kg")
	tests := []struct {
		name string
		key  string
		want bool
	}{
		{"generated", valid, true},
		{"empty", "", false},
		{"short", "kg_abc", false},
		{"truncated", valid[:len(valid)-1], false},
		{"extra char", valid + "a", false},
		{"prefixed but short", "kg_" + strings.Repeat("A", 34), false},
		{"imported", "Imp0rted-Key_With.Enough+Length/1234", true},
		{"space", "imported key with spaces in it 12345", false},
		{"control", "imported\x00key-with-a-nul-byte-1234567", false},
		{"too long", strings.Repeat("a", MaxKeyLen+1), false},
		{"generated shape bad checksum", valid[:len(valid)-6] + "000000", valid[len(valid)-6:] == "000000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := PlausibleKey(tc.key); got != tc.want {
				t.Fatalf("PlausibleKey(%q): got %v, want %v", tc.key, got, tc.want)
			}
		})
	}
}

func TestCheckImportStrength(t *testing.T) {
	t.Parallel()
	valid, _ := GenerateKey("kg")
	bad := valid[:len(valid)-1] + map[bool]string{true: "A", false: "B"}[valid[len(valid)-1] != 'A']
	tests := []struct {
		name    string
		key     string
		wantErr string
	}{
		{"strong", "Xk7#pQ2!vL9$mN4&rT6*wY8@zB3^cD5%", ""},
		{"generated keygate key", valid, ""},
		{"short", "Ab1!", "at least 32 are required"},
		{"one class", strings.Repeat("abcdefghijklmnop", 3), "character classes"},
		{"few distinct", strings.Repeat("aA1", 12), "distinct characters"},
		{"space", "Xk7#pQ2!vL9$mN4&rT6*wY8@zB3^ cD5%", "printable ASCII"},
		{"looks generated, bad checksum", bad, "is not a valid one"},
		{"prefixed, wrong length", "ab_Xk7pQ2vL9mN4rT6wY8zB3cD5eF1gH0", "is not a valid one"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckImportStrength(tc.key)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("got %v, want no error", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestDigest(t *testing.T) {
	t.Parallel()
	// SHA-256("abc"), FIPS 180-2.
	const abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := DigestOf("abc").Hex(); got != abc {
		t.Fatalf("DigestOf(abc): got %s, want %s", got, abc)
	}
	long := strings.Repeat("x", 300) // beyond the stack buffer
	if DigestOf(long) != sha256Of(long) {
		t.Fatal("DigestOf differs from sha256 for a long key")
	}
	d, err := ParseDigestHex(strings.ToUpper(abc))
	if err != nil || d.Hex() != abc {
		t.Fatalf("ParseDigestHex: got %v %v", d.Hex(), err)
	}
	for _, bad := range []string{"", "abc", strings.Repeat("g", 64)} {
		if _, err := ParseDigestHex(bad); err == nil {
			t.Fatalf("ParseDigestHex(%q): no error", bad)
		}
	}
}
