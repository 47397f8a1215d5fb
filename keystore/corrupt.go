package keystore

import "errors"

// ErrCorrupt marks a store whose data is damaged (a truncated or empty
// file, pages that fail the store's consistency check, a panic in the
// storage engine on bad data). Errors wrapping it also wrap ErrUnavailable,
// so the request path answers 503 and never serves from a store it cannot
// trust. The remedy is a restore from a backup.
var ErrCorrupt = errors.New("key store data is corrupt")
