package keystore

import (
	"context"
	"errors"
	"fmt"
)

// ErrorKind classifies a Service refusal; the admin API maps it to a status
// and an error code.
type ErrorKind uint8

const (
	// KindInternal is an unexpected failure (500).
	KindInternal ErrorKind = iota
	// KindInvalid is a bad request (400 invalid_request).
	KindInvalid
	// KindForbidden is an authorization refusal (403 forbidden).
	KindForbidden
	// KindNotFound is an unknown key (404 not_found).
	KindNotFound
	// KindConflict is a duplicate or a state conflict (409 conflict).
	KindConflict
	// KindLicense is an exhausted licence (409 license_exhausted).
	KindLicense
	// KindUnavailable is a store failure (503 store_unavailable).
	KindUnavailable
)

// ServiceError is every error Service returns. Message is meant for the
// client and names the rule that refused the call; Err is the cause, for
// logs only.
type ServiceError struct {
	Kind    ErrorKind
	Message string
	Err     error
}

func (e *ServiceError) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *ServiceError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrNotFound) and friends work for service errors
// of the matching kind.
func (e *ServiceError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Kind == KindNotFound
	case ErrConflict:
		return e.Kind == KindConflict
	case ErrLicenseExhausted:
		return e.Kind == KindLicense
	case ErrUnavailable:
		return e.Kind == KindUnavailable
	}
	return false
}

// KindOf returns the kind of a Service error; errors that are not
// ServiceErrors are classified by the store sentinels they wrap.
func KindOf(err error) ErrorKind {
	var se *ServiceError
	switch {
	case errors.As(err, &se):
		return se.Kind
	case errors.Is(err, ErrNotFound):
		return KindNotFound
	case errors.Is(err, ErrUserKeysExhausted):
		return KindConflict
	case errors.Is(err, ErrLicenseExhausted):
		return KindLicense
	case errors.Is(err, ErrConflict):
		return KindConflict
	case errors.Is(err, ErrUnavailable):
		return KindUnavailable
	}
	return KindInternal
}

func invalidf(format string, args ...any) error {
	return &ServiceError{Kind: KindInvalid, Message: fmt.Sprintf(format, args...)}
}

func forbiddenf(format string, args ...any) error {
	return &ServiceError{Kind: KindForbidden, Message: fmt.Sprintf(format, args...)}
}

func conflictf(format string, args ...any) error {
	return &ServiceError{Kind: KindConflict, Message: fmt.Sprintf(format, args...)}
}

// serviceStoreErr translates a store error into a ServiceError.
func serviceStoreErr(err error, what string) error {
	var se *ServiceError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se):
		return se
	case errors.Is(err, ErrNotFound):
		return &ServiceError{Kind: KindNotFound, Message: what + " not found", Err: err}
	case errors.Is(err, ErrUserKeysExhausted):
		return &ServiceError{Kind: KindConflict, Message: what + ": its user already holds the most active keys that max_keys_per_user allows; revoke one of them first", Err: err}
	case errors.Is(err, ErrLicenseExhausted):
		return &ServiceError{Kind: KindLicense, Message: "the license is exhausted: every licensed key is in use; revoke a key or raise the license", Err: err}
	case errors.Is(err, ErrConflict):
		return &ServiceError{Kind: KindConflict, Message: what + " conflicts with an existing key", Err: err}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &ServiceError{Kind: KindUnavailable, Message: "the request was cancelled before the key store answered", Err: err}
	}
	return &ServiceError{Kind: KindUnavailable, Message: "the key store is unavailable; try again later", Err: err}
}

// cursorErr translates a list error: a cursor the store did not make
// (ErrInvalidCursor) is the caller's fault, anything else a store failure.
func cursorErr(err error, cursor, what string) error {
	if errors.Is(err, ErrInvalidCursor) {
		return &ServiceError{Kind: KindInvalid, Message: fmt.Sprintf("cursor %q is not a cursor this API returned; start without one", cursor), Err: err}
	}
	return serviceStoreErr(err, what)
}
