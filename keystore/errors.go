package keystore

import "errors"

// Sentinel errors. Stores translate their driver errors to these at the
// boundary so callers never see pgx or bbolt types.
var (
	ErrNotFound         = errors.New("not found")
	ErrConflict         = errors.New("conflict")
	ErrLicenseExhausted = errors.New("license exhausted")
	// ErrUserKeysExhausted: the key's user already holds
	// CreateLimits.MaxActivePerUser active keys.
	ErrUserKeysExhausted = errors.New("the user holds the most active keys allowed")
	// ErrUnavailable wraps store failures that mean "try later" (network,
	// closed pool); the handler answers 503 and never fails open.
	ErrUnavailable = errors.New("store unavailable")
	// ErrInvalidCursor is wrapped by ListKeys and ListAudit for a cursor the
	// store did not make; the Service answers it with 400.
	ErrInvalidCursor = errors.New("invalid cursor")
)
