package admin

import (
	"net/http"

	"github.com/keygate/keygate/keystore"
)

// User is GET /users/{user} and the answer of the limits endpoints:
// {"user","active_keys","rate","quota"}. The CLI decodes the same type.
type User struct {
	User       string `json:"user"`
	ActiveKeys int    `json:"active_keys"`
	Rate       *Rate  `json:"rate"`
	Quota      *Quota `json:"quota"`
}

func renderUser(u keystore.UserInfo) User {
	out := User{User: u.User, ActiveKeys: u.ActiveKeys}
	if r := u.Limits.Rate; r != nil {
		out.Rate = &Rate{Limit: r.Limit, Per: keystore.FormatDuration(r.Per)}
	}
	if q := u.Limits.Quota; q != nil {
		out.Quota = &Quota{Limit: q.Limit, Period: q.Period}
	}
	return out
}

// GET /users/{user} and GET /users/{user}/limits
func (h *handler) getUser(w http.ResponseWriter, r *http.Request, a keystore.Actor) {
	h.userCall(w, r, func(user string) (keystore.UserInfo, error) { return h.svc.User(r.Context(), a, user) })
}

// PUT /users/{user}/limits {"rate":{…},"quota":{…}}
func (h *handler) putUserLimits(w http.ResponseWriter, r *http.Request, a keystore.Actor) {
	var spec keystore.UserLimitsSpec
	if err := h.decodeObject(w, r, &spec); err != nil {
		h.fail(w, r, err)
		return
	}
	h.userCall(w, r, func(user string) (keystore.UserInfo, error) {
		return h.svc.SetUserLimits(r.Context(), a, user, spec)
	})
}

// DELETE /users/{user}/limits
func (h *handler) deleteUserLimits(w http.ResponseWriter, r *http.Request, a keystore.Actor) {
	h.userCall(w, r, func(user string) (keystore.UserInfo, error) { return h.svc.DeleteUserLimits(r.Context(), a, user) })
}

func (h *handler) userCall(w http.ResponseWriter, r *http.Request, call func(user string) (keystore.UserInfo, error)) {
	user, err := pathValue(r, "user")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	info, err := call(user)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, renderUser(info))
}
