package bolt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/keystore"
)

// userLimitsRecord is the stored form of a user's limits (file format, like
// keyRecord).
type userLimitsRecord struct {
	Rate  *rateRecord  `json:"rate,omitempty"`
	Quota *quotaRecord `json:"quota,omitempty"`
}

// SetUserLimits implements keystore.Store. One process owns the file, so
// evicting cached keys is the caller's (Service's) job.
func (s *Store) SetUserLimits(ctx context.Context, user string, l keystore.UserLimits) error {
	if user == "" || l.IsZero() {
		return errors.New("setting user limits: a user and a rate or quota are required")
	}
	var r userLimitsRecord
	if l.Rate != nil {
		r.Rate = &rateRecord{Limit: l.Rate.Limit, Per: l.Rate.Per.String()}
	}
	if l.Quota != nil {
		r.Quota = &quotaRecord{Limit: l.Quota.Limit, Period: l.Quota.Period}
	}
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := s.update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketUserLimits).Put([]byte(user), v) }); err != nil {
		return fmt.Errorf("setting the limits of user %s: %w", user, err)
	}
	return nil
}

// DeleteUserLimits implements keystore.Store.
func (s *Store) DeleteUserLimits(ctx context.Context, user string) error {
	if err := s.update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketUserLimits).Delete([]byte(user)) }); err != nil {
		return fmt.Errorf("deleting the limits of user %s: %w", user, err)
	}
	return nil
}

// UserLimits implements keystore.Store.
func (s *Store) UserLimits(ctx context.Context, user string) (keystore.UserLimits, error) {
	var l keystore.UserLimits
	err := s.view(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketUserLimits).Get([]byte(user))
		if v == nil {
			return nil
		}
		var r userLimitsRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decoding: %w", err)
		}
		if r.Rate != nil {
			per, err := time.ParseDuration(r.Rate.Per)
			if err != nil {
				return fmt.Errorf("decoding rate: %w", err)
			}
			l.Rate = &keystore.Rate{Limit: r.Rate.Limit, Per: per}
		}
		if r.Quota != nil {
			l.Quota = &keystore.Quota{Limit: r.Quota.Limit, Period: r.Quota.Period}
		}
		return nil
	})
	if err != nil {
		return keystore.UserLimits{}, fmt.Errorf("reading the limits of user %s: %w", user, err)
	}
	return l, nil
}
