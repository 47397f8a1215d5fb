package keystore

import (
	"context"

	"go.uber.org/zap"
)

// Audit actions of per-user limits.
const (
	ActionSetUserLimits    = "set_user_limits"
	ActionDeleteUserLimits = "delete_user_limits"
)

// UserLimitsSpec is the body of PUT /users/{user}/limits: a rate and/or a
// quota shared by all keys of the user.
type UserLimitsSpec struct {
	Rate  *RateSpec `json:"rate"`
	Quota *Quota    `json:"quota"`
}

// UserInfo is GET /users/{user}: the user's active keys and limits.
type UserInfo struct {
	User       string
	ActiveKeys int
	Limits     UserLimits
}

// User returns the active key count and the limits of user. keys:self may
// read its own user.
func (s *Service) User(ctx context.Context, a Actor, user string) (UserInfo, error) {
	if err := s.mayManage(a); err != nil {
		return UserInfo{}, err
	}
	if err := checkAdminText("user", user, maxUserLen, true); err != nil {
		return UserInfo{}, err
	}
	if !a.admin() && user != a.User {
		return UserInfo{}, forbiddenf("keys:self may only read its own user %q", a.User)
	}
	return s.userInfo(ctx, user)
}

func (s *Service) userInfo(ctx context.Context, user string) (UserInfo, error) {
	l, err := s.Store.UserLimits(ctx, user)
	if err != nil {
		return UserInfo{}, serviceStoreErr(err, "user "+user)
	}
	info := UserInfo{User: user, Limits: l}
	err = s.eachKeyOfUser(ctx, user, StatusActive, func(*Key) { info.ActiveKeys++ })
	return info, err
}

// eachKeyOfUser calls fn with every key of user (of status, if set).
func (s *Service) eachKeyOfUser(ctx context.Context, user string, status Status, fn func(*Key)) error {
	for cursor := ""; ; {
		keys, next, err := s.Store.ListKeys(ctx, ListFilter{User: user, Status: status, Now: s.Clock(), Limit: MaxPageSize, Cursor: cursor})
		if err != nil {
			return serviceStoreErr(err, "the keys of user "+user)
		}
		for _, k := range keys {
			fn(k)
		}
		if next == "" {
			return nil
		}
		cursor = next
	}
}

// SetUserLimits sets the rate and/or quota shared by all keys of user
// (keys:admin only). The user's cached keys are evicted, so the limits
// apply from the next request.
func (s *Service) SetUserLimits(ctx context.Context, a Actor, user string, spec UserLimitsSpec) (UserInfo, error) {
	if err := requireAdmin(a, "set per-user limits"); err != nil {
		return UserInfo{}, err
	}
	if err := checkAdminText("user", user, maxUserLen, true); err != nil {
		return UserInfo{}, err
	}
	var l UserLimits
	var err error
	if spec.Rate != nil {
		if l.Rate, err = ParseRate(*spec.Rate); err != nil {
			return UserInfo{}, err
		}
	}
	if spec.Quota != nil {
		if l.Quota, err = ValidateQuota(*spec.Quota); err != nil {
			return UserInfo{}, err
		}
	}
	if l.IsZero() {
		return UserInfo{}, invalidf("give a rate, a quota or both; DELETE /users/{user}/limits removes the limits")
	}
	if err := s.Store.SetUserLimits(ctx, user, l); err != nil {
		return UserInfo{}, serviceStoreErr(err, "user "+user)
	}
	s.invalidateUser(ctx, user)
	details := map[string]any{"user": user, "rate": nil, "quota": nil}
	if l.Rate != nil {
		details["rate"] = map[string]any{"limit": l.Rate.Limit, "per": FormatDuration(l.Rate.Per)}
	}
	if l.Quota != nil {
		details["quota"] = map[string]any{"limit": l.Quota.Limit, "period": l.Quota.Period}
	}
	now := s.now()
	s.audit(ctx, a, ActionSetUserLimits, "", details, now)
	return s.userInfo(ctx, user)
}

// DeleteUserLimits removes the limits of user (keys:admin only; idempotent).
func (s *Service) DeleteUserLimits(ctx context.Context, a Actor, user string) (UserInfo, error) {
	if err := requireAdmin(a, "remove per-user limits"); err != nil {
		return UserInfo{}, err
	}
	if err := checkAdminText("user", user, maxUserLen, true); err != nil {
		return UserInfo{}, err
	}
	if err := s.Store.DeleteUserLimits(ctx, user); err != nil {
		return UserInfo{}, serviceStoreErr(err, "user "+user)
	}
	s.invalidateUser(ctx, user)
	s.audit(ctx, a, ActionDeleteUserLimits, "", map[string]any{"user": user}, s.now())
	return s.userInfo(ctx, user)
}

// invalidateUser evicts the cached keys of user, which carry its limits.
// A failure to list them is logged: the limits then apply when the cached
// entries are refreshed (cache refresh_after).
func (s *Service) invalidateUser(ctx context.Context, user string) {
	var keys []*Key
	if err := s.eachKeyOfUser(ctx, user, "", func(k *Key) { keys = append(keys, k) }); err != nil {
		if s.Logger != nil {
			s.Logger.Warn("listing the keys of a user to evict them after a limits change failed; they pick the new limits up within the cache's refresh_after",
				zap.String("user", user), zap.Error(err))
		}
		return
	}
	s.invalidate(keys...)
}
