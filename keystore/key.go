package keystore

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"unsafe"
)

// Key format (docs/design.md §2): <prefix>_<32 base62 random chars><6 base62 chars of CRC32>.
// The CRC32 (IEEE) covers everything before it, "<prefix>_<random>", the same
// construction GitHub uses for its tokens: typos and garbage are rejected offline,
// and secret scanners can recognise a real key without asking anyone.
const (
	randomLen   = 32
	checksumLen = 6
	bodyLen     = randomLen + checksumLen

	// DefaultPrefix is the key prefix used when none is configured.
	DefaultPrefix = "kg"
	// MaxPrefixLen bounds the configurable prefix.
	MaxPrefixLen = 8
	// MaxKeyLen bounds any presented key; longer values are rejected offline.
	MaxKeyLen = 512
	// MinImportLen is the shortest key accepted by import.
	MinImportLen = 32
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// Digest is the SHA-256 of a key: the only form in which keys are stored.
type Digest [sha256.Size]byte

// DigestOf returns SHA-256(key). Keys up to 128 bytes are hashed from a
// stack buffer, so the request path does not allocate.
func DigestOf(key string) Digest {
	var buf [128]byte
	if len(key) <= len(buf) {
		n := copy(buf[:], key)
		return sha256.Sum256(buf[:n])
	}
	return sha256.Sum256([]byte(key))
}

// Hex returns the lowercase hex form of the digest.
func (d Digest) Hex() string { return hex.EncodeToString(d[:]) }

// IsZero reports whether d is the zero digest (no digest).
func (d Digest) IsZero() bool { return d == Digest{} }

// ParseDigestHex parses a 64-char hex SHA-256 digest.
func ParseDigestHex(s string) (Digest, error) {
	var d Digest
	if len(s) != 2*len(d) {
		return d, fmt.Errorf("sha256 must be %d hex characters, got %d", 2*len(d), len(s))
	}
	if _, err := hex.Decode(d[:], []byte(strings.ToLower(s))); err != nil {
		return d, errors.New("sha256 must be hexadecimal")
	}
	return d, nil
}

// ValidatePrefix checks a configured key prefix: letters and digits, 1 to 8 chars.
func ValidatePrefix(prefix string) error {
	if prefix == "" || len(prefix) > MaxPrefixLen {
		return fmt.Errorf("prefix %q must be 1 to %d letters or digits", prefix, MaxPrefixLen)
	}
	for i := 0; i < len(prefix); i++ {
		if !isAlnum(prefix[i]) {
			return fmt.Errorf("prefix %q must be 1 to %d letters or digits", prefix, MaxPrefixLen)
		}
	}
	return nil
}

// GenerateKey returns a new random key with the given prefix.
func GenerateKey(prefix string) (string, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return "", err
	}
	buf := make([]byte, len(prefix)+1+bodyLen)
	n := copy(buf, prefix)
	buf[n] = '_'
	n++
	random := buf[n : n+randomLen]
	if _, err := rand.Read(random); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	// Rejection sampling keeps the characters uniform: 248 = 4*62.
	for i := range random {
		for random[i] >= 248 {
			var b [1]byte
			if _, err := rand.Read(b[:]); err != nil {
				return "", fmt.Errorf("reading random bytes: %w", err)
			}
			random[i] = b[0]
		}
		random[i] = base62[random[i]%62]
	}
	n += randomLen
	putChecksum(buf[n:], crc32.ChecksumIEEE(buf[:n]))
	return string(buf), nil
}

// putChecksum writes v as 6 base62 digits, most significant first.
func putChecksum(dst []byte, v uint32) {
	x := uint64(v)
	for i := checksumLen - 1; i >= 0; i-- {
		dst[i] = base62[x%62]
		x /= 62
	}
}

// LooksGenerated reports whether key has the shape of a generated key
// (<alnum prefix ≤ 8>_<38 base62>), whatever its checksum.
func LooksGenerated(key string) bool {
	i := len(key) - bodyLen - 1
	if i < 1 || i > MaxPrefixLen || key[i] != '_' {
		return false
	}
	for j := 0; j < len(key); j++ {
		if j != i && !isAlnum(key[j]) {
			return false
		}
	}
	return true
}

// ChecksumValid reports whether a key of generated shape carries a correct
// checksum. It does not allocate.
func ChecksumValid(key string) bool {
	if !LooksGenerated(key) {
		return false
	}
	return checksumOK(key)
}

// checksumOK checks the checksum of a key of generated shape.
func checksumOK(key string) bool {
	n := len(key) - checksumLen
	var want [checksumLen]byte
	putChecksum(want[:], crc32.ChecksumIEEE(unsafe.Slice(unsafe.StringData(key), n)))
	return key[n:] == string(want[:])
}

// PlausibleKey is the offline check of docs/design.md §1 step 2. Generated keys must
// carry a valid checksum; anything else can only be an imported key, which is
// at least MinImportLen printable characters. Everything else is rejected
// without touching the cache or the store.
func PlausibleKey(key string) bool {
	if len(key) < MinImportLen || len(key) > MaxKeyLen {
		return false
	}
	if i := prefixedAt(key); i > 0 {
		// "<prefix>_<letters and digits>": a keygate key, possibly
		// truncated or mistyped. Only an exact, checksummed one passes:
		// its only '_' (prefixedAt saw every other byte) ends the prefix
		// where a generated key's does.
		return i == len(key)-bodyLen-1 && checksumOK(key)
	}
	for i := 0; i < len(key); i++ {
		if key[i] <= ' ' || key[i] >= 0x7f {
			return false
		}
	}
	return true
}

// looksPrefixed reports whether key is "<1–8 letters/digits>_<letters and
// digits>", the shape of a keygate key of any length. Such values are judged
// offline (never as imported keys), so a truncated or mistyped key is
// rejected without a store lookup.
func looksPrefixed(key string) bool { return prefixedAt(key) > 0 }

// prefixedAt is the index of the '_' of a key that looksPrefixed, else 0.
func prefixedAt(key string) int {
	i := strings.IndexByte(key, '_')
	if i < 1 || i > MaxPrefixLen || i == len(key)-1 {
		return 0
	}
	for j := 0; j < len(key); j++ {
		if j != i && !isAlnum(key[j]) {
			return 0
		}
	}
	return i
}

// DisplayStart returns the part of a key that may be shown and stored:
// the prefix and the first 4 characters of the secret ("kg_4Fq9"). For keys
// without a prefix (imported) it is their first 4 characters.
func DisplayStart(key string) string {
	if LooksGenerated(key) {
		i := strings.IndexByte(key, '_')
		return key[:i+5]
	}
	if len(key) < 4 {
		return ""
	}
	return key[:4]
}

// CheckImportStrength explains why an outside key is too weak to import, or
// returns nil. The rules: at least 32 printable ASCII characters without
// spaces, at least 3 of the 4 classes (lower, upper, digit, symbol), at least
// 12 distinct characters, and nothing of a keygate key's shape that is not
// a valid keygate key.
func CheckImportStrength(key string) error {
	if len(key) < MinImportLen {
		return fmt.Errorf("imported key is %d characters long; at least %d are required", len(key), MinImportLen)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("imported key is %d characters long; at most %d are allowed", len(key), MaxKeyLen)
	}
	var lower, upper, digit, symbol bool
	distinct := map[byte]bool{}
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c <= ' ' || c >= 0x7f:
			return errors.New("imported key may contain only printable ASCII characters without spaces")
		case c >= 'a' && c <= 'z':
			lower = true
		case c >= 'A' && c <= 'Z':
			upper = true
		case c >= '0' && c <= '9':
			digit = true
		default:
			symbol = true
		}
		distinct[c] = true
	}
	classes := 0
	for _, b := range []bool{lower, upper, digit, symbol} {
		if b {
			classes++
		}
	}
	if classes < 3 {
		return fmt.Errorf("imported key uses %d of the 4 character classes (lower case, upper case, digits, symbols); at least 3 are required", classes)
	}
	if len(distinct) < 12 {
		return fmt.Errorf("imported key has only %d distinct characters; at least 12 are required", len(distinct))
	}
	if looksPrefixed(key) && !ChecksumValid(key) {
		return errors.New("imported key has the shape of a keygate key (prefix, underscore, letters and digits) but is not a valid one; such keys are checked offline and it would always be rejected")
	}
	return nil
}

func isAlnum(c byte) bool { return alnum[c] }

// alnum is isAlnum as a table: keys are random letters and digits, on which
// the three range tests mispredict.
var alnum = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
	}
	return t
}()
