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
// single-key case; all lines are its 1,000-key mix.
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
	)
	flag.Parse()
	if err := run(*storePath, *n, *sample, *out, strings.Split(*rights, ","), *prefix); err != nil {
		fmt.Fprintln(os.Stderr, "seed:", err)
		os.Exit(1)
	}
}

func run(storePath string, n, sample int, out string, rights []string, prefix string) error {
	if storePath == "" || out == "" {
		return fmt.Errorf("-store and -out are required")
	}
	if sample > n || sample < 1 {
		return fmt.Errorf("-sample must be between 1 and -n")
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

	ctx := context.Background()
	start := time.Now()
	created := start.UTC()
	every := n / sample
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
		if i%every == 0 && i/every < sample {
			fmt.Fprintln(w, secret)
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "seed: %d keys in %s (%s), %d secrets in %s\n",
		n, storePath, time.Since(start).Round(time.Millisecond), sample, out)
	return nil
}
