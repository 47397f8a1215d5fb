package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/keystore"
)

// corruptFixture is a closed store file with n keys, the page size and the
// root pages of its main buckets.
type corruptFixture struct {
	path     string
	pageSize int
	roots    map[string]int64 // bucket → root page id
	pages    int64            // high water mark
}

func buildStore(t testing.TB, n int) *corruptFixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	s.db.NoSync = true
	for from := 0; from < n && err == nil; from += 10_000 {
		err = s.db.Update(func(tx *bbolt.Tx) error { return fillKeys(tx, from, min(from+10_000, n), now) })
	}
	if err != nil {
		t.Fatalf("filling: %v", err)
	}
	s.db.NoSync = false
	if err := s.db.Sync(); err != nil {
		t.Fatal(err)
	}
	f := &corruptFixture{path: path, pageSize: s.db.Info().PageSize, roots: map[string]int64{}}
	s.db.View(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketKeys, bucketDigests, bucketOrder, bucketUsers, bucketUsage} {
			f.roots[string(b)] = int64(tx.Bucket(b).Root())
		}
		f.pages = int64(tx.Stats().PageCount) // informative only
		return nil
	})
	for b, r := range f.roots {
		if r == 0 {
			t.Fatalf("bucket %s is inline; use more keys", b)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return f
}

// fillKeys inserts keys from..to-1 with a usage count each.
func fillKeys(tx *bbolt.Tx, from, to int, now time.Time) error {
	for i := from; i < to; i++ {
		k := &keystore.Key{ID: fmt.Sprintf("key_c%08d", i), Name: "integration", User: "USER" + fmt.Sprint(i%10),
			Rights: []string{"assets:read"}, Digest: benchDigest(i), CreatedAt: now, CreatedBy: "local"}
		if err := insertKey(tx, k); err != nil {
			return err
		}
		if err := tx.Bucket(bucketUsage).Put(usageKey(k.ID, now), u64(1)); err != nil {
			return err
		}
	}
	return nil
}

// writePage overwrites page id of the file with data (padded to a page).
func (f *corruptFixture) writePage(t testing.TB, id int64, data []byte) {
	t.Helper()
	fh, err := os.OpenFile(f.path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	page := make([]byte, f.pageSize)
	copy(page, data)
	if _, err := fh.WriteAt(page, id*int64(f.pageSize)); err != nil {
		t.Fatal(err)
	}
}

func garbage(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// wantCorrupt checks an Open error names the file, wraps ErrCorrupt (and
// ErrUnavailable) and says what to do.
func wantCorrupt(t *testing.T, err error, path string) {
	t.Helper()
	if err == nil {
		t.Fatal("Open: got no error, want ErrCorrupt")
	}
	if !errors.Is(err, keystore.ErrCorrupt) || !errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("Open: %v: want it to wrap ErrCorrupt and ErrUnavailable", err)
	}
	for _, want := range []string{path, "restore it from a backup", "move the file away"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("Open: %q: want it to contain %q", err, want)
		}
	}
}

func TestOpenEmptyFileIsAnError(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keys.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, Options{})
	if err == nil {
		s.Close()
	}
	wantCorrupt(t, err, path)
	if !strings.Contains(err.Error(), "empty") {
		t.Fatalf("Open: %q: want it to say the file is empty", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Fatalf("the empty file was changed: %v %v", fi, err)
	}
}

func TestOpenUnreadableFile(t *testing.T) {
	t.Parallel()
	if os.Geteuid() == 0 {
		t.Skip("root reads any file")
	}
	f := buildStore(t, 10)
	if err := os.Chmod(f.path, 0); err != nil {
		t.Fatal(err)
	}
	_, err := Open(f.path, Options{})
	if err == nil || !strings.Contains(err.Error(), f.path) || !strings.Contains(err.Error(), "cannot be read") {
		t.Fatalf("Open of an unreadable file: got %v, want an error naming it", err)
	}
}

func TestOpenCorruptFile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, f *corruptFixture)
	}{
		{"truncated to half", func(t *testing.T, f *corruptFixture) {
			fi, _ := os.Stat(f.path)
			os.Truncate(f.path, fi.Size()/2)
		}},
		{"truncated to the meta pages", func(t *testing.T, f *corruptFixture) { os.Truncate(f.path, 2*int64(f.pageSize)) }},
		{"truncated mid-page", func(t *testing.T, f *corruptFixture) { os.Truncate(f.path, 3*int64(f.pageSize)+100) }},
		{"meta pages zeroed", func(t *testing.T, f *corruptFixture) {
			f.writePage(t, 0, nil)
			f.writePage(t, 1, nil)
		}},
		{"meta pages garbage", func(t *testing.T, f *corruptFixture) {
			f.writePage(t, 0, garbage(f.pageSize, 1))
			f.writePage(t, 1, garbage(f.pageSize, 2))
		}},
		{"keys root page garbage", func(t *testing.T, f *corruptFixture) { f.writePage(t, f.roots["keys"], garbage(f.pageSize, 3)) }},
		{"digests root page zeroed", func(t *testing.T, f *corruptFixture) { f.writePage(t, f.roots["digests"], nil) }},
		{"usage root page garbage", func(t *testing.T, f *corruptFixture) { f.writePage(t, f.roots["usage"], garbage(f.pageSize, 4)) }},
		{"every data page garbage", func(t *testing.T, f *corruptFixture) {
			fi, _ := os.Stat(f.path)
			for id := int64(2); id < fi.Size()/int64(f.pageSize); id++ {
				f.writePage(t, id, garbage(f.pageSize, uint64(id)))
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := buildStore(t, 2000)
			tc.damage(t, f)
			s, err := Open(f.path, Options{Timeout: time.Second})
			if err == nil {
				s.Close()
			}
			wantCorrupt(t, err, f.path)
			t.Logf("%v", err)
		})
	}
}

// TestCorruptPageWhileOpen damages pages under an open store (the file
// changes behind bbolt's mapping, as a failing disk would): operations fail
// with an error instead of a panic that would end the process.
func TestCorruptPageWhileOpen(t *testing.T) {
	t.Parallel()
	f := buildStore(t, 2000)
	s, err := Open(f.path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, b := range []string{"keys", "digests", "order", "users", "usage"} {
		f.writePage(t, f.roots[b], garbage(f.pageSize, uint64(f.roots[b])))
	}
	ctx := t.Context()
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	ops := map[string]func() error{
		"LookupDigest": func() error { _, err := s.LookupDigest(ctx, benchDigest(7)); return err },
		"GetKey":       func() error { _, err := s.GetKey(ctx, "key_c00000007"); return err },
		"ListKeys":     func() error { _, _, err := s.ListKeys(ctx, keystore.ListFilter{}); return err },
		"CountActive":  func() error { _, err := s.CountActive(ctx, now); return err },
		"AddUsage": func() error {
			return s.AddUsage(ctx, "batch-1", []keystore.UsageDelta{{KeyID: "key_c00000007", Day: now.Truncate(24 * time.Hour), Requests: 3, LastUsed: now}})
		},
		"Usage": func() error { _, err := s.Usage(ctx, "key_c00000007", now.AddDate(0, 0, -3), now); return err },
	}
	corrupted := 0
	for name, op := range ops {
		err := op()
		if err == nil {
			t.Errorf("%s over garbage pages: got no error", name)
			continue
		}
		if errors.Is(err, keystore.ErrCorrupt) {
			corrupted++
			if !errors.Is(err, keystore.ErrUnavailable) {
				t.Errorf("%s: %v does not wrap ErrUnavailable (the request path's 503)", name, err)
			}
		}
		t.Logf("%s: %v", name, err)
	}
	if corrupted == 0 {
		t.Fatal("no operation reported ErrCorrupt")
	}
}

func TestBackupRestore(t *testing.T) {
	t.Parallel()
	f := buildStore(t, 3000)
	s, err := Open(f.path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := s.Backup(&buf); err != nil {
		t.Fatalf("Backup: %v", err)
	}
	// The store keeps working after (and during) the backup.
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	later := &keystore.Key{ID: "key_after_backup", Name: "n", User: "u", Digest: keystore.DigestOf("after"), CreatedAt: now}
	if err := s.CreateKey(t.Context(), later, keystore.CreateLimits{}, now); err != nil {
		t.Fatalf("CreateKey after Backup: %v", err)
	}
	s.Close()

	restored := filepath.Join(t.TempDir(), "restored.db")
	if err := os.WriteFile(restored, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Open(restored, Options{})
	if err != nil {
		t.Fatalf("opening the backup: %v", err)
	}
	defer r.Close()
	for _, i := range []int{0, 1234, 2999} {
		k, err := r.LookupDigest(t.Context(), benchDigest(i))
		if err != nil || k.ID != fmt.Sprintf("key_c%08d", i) {
			t.Fatalf("key %d in the backup: got %v %v", i, k, err)
		}
	}
	if _, err := r.LookupDigest(t.Context(), keystore.DigestOf("after")); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("a key created after the backup: got %v, want ErrNotFound (the snapshot is of its start)", err)
	}
	if n, err := r.CountActive(t.Context(), now); err != nil || n != 3000 {
		t.Fatalf("CountActive in the backup: %d %v, want 3000", n, err)
	}
}

// BenchmarkOpenCheck is Open (with its whole-file consistency check) of a
// store of 100,000 keys.
func BenchmarkOpenCheck(b *testing.B) {
	f := buildStore(b, 100_000)
	fi, _ := os.Stat(f.path)
	var took time.Duration
	for b.Loop() {
		s, err := Open(f.path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		took += s.CheckDuration()
		s.Close()
	}
	b.ReportMetric(float64(took.Milliseconds())/float64(b.N), "check-ms/op")
	b.ReportMetric(float64(fi.Size())/(1<<20), "file-MiB")
}
