package keystore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Journal is the last resort for usage counts at shutdown: when the store
// cannot take the final flush (disk full, database cut), the batches are
// appended to a local file, fsync'd, and replayed into the store at the
// next start. Batch ids make the replay exactly-once: a batch the store
// did apply before its answer was lost is skipped by AddUsage.
//
// A Journal is a UsageWriter, so the Meter flushes into it like into a
// store. It is not safe for concurrent use; the Meter serialises flushes.
type Journal struct {
	Path string
}

// journalEntry is one line of the journal file.
type journalEntry struct {
	Batch  string       `json:"batch"`
	Deltas []UsageDelta `json:"deltas"`
}

// AddUsage appends one batch and syncs the file before returning.
func (j *Journal) AddUsage(_ context.Context, batchID string, deltas []UsageDelta) error {
	line, err := json.Marshal(journalEntry{Batch: batchID, Deltas: deltas})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(j.Path), 0o700); err != nil {
		return fmt.Errorf("usage journal %s: %w", j.Path, err)
	}
	f, err := os.OpenFile(j.Path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("usage journal %s: %w", j.Path, err)
	}
	_, werr := f.Write(append(line, '\n'))
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("usage journal %s: %w", j.Path, err)
	}
	return nil
}

// Replay sends every journalled batch to w, in order, and removes the file
// once all were taken. A missing file is nothing to replay. A last line
// cut short (a crash while appending, before its fsync returned) was never
// acknowledged and is skipped; any other damaged line is an error and the
// file is kept.
func (j *Journal) Replay(ctx context.Context, w UsageWriter) (batches int, err error) {
	data, err := os.ReadFile(j.Path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("usage journal %s: %w", j.Path, err)
	}
	r := bufio.NewReader(bytes.NewReader(data))
	for lineNo := 1; ; lineNo++ {
		line, rerr := r.ReadBytes('\n')
		if rerr == io.EOF {
			break // what follows the last newline was never acknowledged
		}
		if rerr != nil {
			return batches, fmt.Errorf("usage journal %s: %w", j.Path, rerr)
		}
		var e journalEntry
		if err := json.Unmarshal(line, &e); err != nil || e.Batch == "" {
			return batches, fmt.Errorf("usage journal %s: line %d is damaged; the file is kept for inspection: %v", j.Path, lineNo, err)
		}
		if err := w.AddUsage(ctx, e.Batch, e.Deltas); err != nil {
			return batches, fmt.Errorf("replaying usage journal %s, batch %s: %w", j.Path, e.Batch, err)
		}
		batches++
	}
	if err := os.Remove(j.Path); err != nil {
		return batches, fmt.Errorf("usage journal %s replayed but not removed (remove it by hand, or it is replayed again harmlessly): %w", j.Path, err)
	}
	return batches, nil
}
