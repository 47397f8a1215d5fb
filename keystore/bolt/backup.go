package bolt

import (
	"io"

	bbolt "go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the whole store to w while it keeps
// serving: one read transaction, so the copy is the state at its start and
// writers are not blocked. The copy is a key store file of its own; restore
// it by stopping keygate and putting it in place of keys.db.
func (s *Store) Backup(w io.Writer) error {
	return s.view(func(tx *bbolt.Tx) error {
		_, err := tx.WriteTo(w)
		return err
	})
}
