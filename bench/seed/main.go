// Command seed fills a keygate bolt store with generated keys for the
// benchmark and writes a sample of their secrets to a file.
//
// Only the digest and the display start of each key go into the store, as
// with keys created through the admin API. The keys are written through the
// public keystore.Store API (bolt.Store.CreateKey, one bbolt transaction per
// key); put the store on tmpfs (bench/run uses /dev/shm when it exists) so
// the per-transaction fsync costs microseconds and 100,000 keys take seconds.
//
//	go run ./bench/seed -store /dev/shm/kg/keys.db -n 100000 -sample 1000 -out keys.txt
//
// The first line of the sample file is the key bench/run uses for its
// single-key case; all lines are its 1,000-key mix. With -cold N, N more
// keys' secrets go to -cold-out, for bench/coldkey (keys no case uses, so
// their first request misses the cache).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/bolt"
)

func main() {
	var (
		storePath = flag.String("store", "", "bolt store file to create (must not exist)")
		n         = flag.Int("n", 100_000, "number of keys to store")
		sample    = flag.Int("sample", 1000, "number of key secrets to write to -out (spread over the store)")
		out       = flag.String("out", "", "file for the sampled key secrets, one per line")
		rights    = flag.String("rights", "assets:read,workorders:write", "comma-separated rights of every key")
		prefix    = flag.String("prefix", keystore.DefaultPrefix, "key prefix")
		cold      = flag.Int("cold", 0, "number of further key secrets to write to -cold-out (spread over the store, none in -out)")
		coldOut   = flag.String("cold-out", "", "file for the -cold secrets")
	)
	flag.Parse()
	if err := run(*storePath, *n, *sample, *out, strings.Split(*rights, ","), *prefix, *cold, *coldOut); err != nil {
		fmt.Fprintln(os.Stderr, "seed:", err)
		os.Exit(1)
	}
}

func run(storePath string, n, sample int, out string, rights []string, prefix string, cold int, coldOut string) error {
	if storePath == "" || out == "" {
		return fmt.Errorf("-store and -out are required")
	}
	if sample < 1 || cold < 0 || sample+cold > n {
		return fmt.Errorf("-sample must be at least 1, -cold at least 0, and together at most -n")
	}
	if (cold > 0) != (coldOut != "") {
		return fmt.Errorf("-cold and -cold-out go together")
	}
	if _, err := os.Stat(storePath); err == nil {
		return fmt.Errorf("%s exists; seed writes a fresh store", storePath)
	}
	s, err := bolt.Open(storePath, bolt.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	var cf *os.File
	var cw *bufio.Writer
	if cold > 0 {
		if cf, err = os.OpenFile(coldOut, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
			return err
		}
		cw = bufio.NewWriter(cf)
	}

	ctx := context.Background()
	start := time.Now()
	created := start.UTC()
	every := n / (sample + cold)
	wrote, wroteCold := 0, 0
	for i := 0; i < n; i++ {
		secret, err := keystore.GenerateKey(prefix)
		if err != nil {
			return err
		}
		id, err := keystore.NewID()
		if err != nil {
			return err
		}
		k := &keystore.Key{
			ID:        id,
			Name:      fmt.Sprintf("bench-%06d", i),
			User:      fmt.Sprintf("USER%04d", i%1000),
			Rights:    rights,
			Start:     keystore.DisplayStart(secret),
			Digest:    keystore.DigestOf(secret),
			CreatedAt: created,
			CreatedBy: keystore.LocalActorID,
		}
		if err := s.CreateKey(ctx, k, keystore.CreateLimits{}, created); err != nil {
			return err
		}
		// Sampled keys alternate between the two files while both want
		// more, so both spread over the store.
		if j := i / every; i%every == 0 && j < sample+cold {
			if wroteCold < cold && (j%2 == 1 || wrote == sample) {
				fmt.Fprintln(cw, secret)
				wroteCold++
			} else {
				fmt.Fprintln(w, secret)
				wrote++
			}
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if cw != nil {
		if err := cw.Flush(); err != nil {
			return err
		}
		if err := cf.Close(); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "seed: %d keys in %s (%s), %d secrets in %s\n",
		n, storePath, time.Since(start).Round(time.Millisecond), sample, out)
	return nil
}
