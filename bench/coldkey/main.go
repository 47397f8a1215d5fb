// Command coldkey measures, against a running keygate, what a key's first
// request costs (its key not in the cache: one store lookup) next to its
// second (cached), one key after the other on one keep-alive connection.
//
//	go run ./bench/coldkey -url http://127.0.0.1:8080/maximo/oslc/os/mxasset -keys cold.txt
//
// The keys must be valid and never used since keygate started (bench/seed
// -cold writes such a file). It prints the median and 90th percentile of
// both latencies and of their difference per key; every answer must be 200.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"time"
)

func main() {
	url := flag.String("url", "", "URL to GET with each key in the apikey header")
	keys := flag.String("keys", "", "file of key secrets, one per line, none used yet")
	flag.Parse()
	if err := run(*url, *keys); err != nil {
		fmt.Fprintln(os.Stderr, "coldkey:", err)
		os.Exit(1)
	}
}

func run(url, keysFile string) error {
	if url == "" || keysFile == "" {
		return fmt.Errorf("-url and -keys are required")
	}
	f, err := os.Open(keysFile)
	if err != nil {
		return err
	}
	defer f.Close()
	var secrets []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := sc.Text(); line != "" {
			secrets = append(secrets, line)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if len(secrets) == 0 {
		return fmt.Errorf("no keys in %s", keysFile)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 5 * time.Second}
	get := func(key string) (time.Duration, error) {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("apikey", key)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("answered %d", resp.StatusCode)
		}
		return took, err
	}
	// A warm connection first, with a key of the file's last line used
	// twice (it is then no longer cold and is left out).
	last := secrets[len(secrets)-1]
	secrets = secrets[:len(secrets)-1]
	for range 2 {
		if _, err := get(last); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	var cold, cached, extra []time.Duration
	for i, key := range secrets {
		c, err := get(key)
		if err != nil {
			return fmt.Errorf("key %d, first request: %w", i, err)
		}
		h, err := get(key)
		if err != nil {
			return fmt.Errorf("key %d, second request: %w", i, err)
		}
		cold, cached, extra = append(cold, c), append(cached, h), append(extra, c-h)
	}
	fmt.Printf("cold keys: %d keys, first request (not cached) vs second (cached), one connection\n", len(secrets))
	for _, r := range []struct {
		name string
		d    []time.Duration
	}{{"first request", cold}, {"second request", cached}, {"difference per key", extra}} {
		slices.Sort(r.d)
		fmt.Printf("  %-20s median %8.1f µs   p90 %8.1f µs\n", r.name, micros(r.d[len(r.d)/2]), micros(r.d[len(r.d)*9/10]))
	}
	return nil
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
