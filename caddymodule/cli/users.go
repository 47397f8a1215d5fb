package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
)

// userObject is GET /users/{user}, the admin API's own wire type.
type userObject = admin.User

func userPath(user string) string { return "/apikey/users/" + url.PathEscape(user) }

func (a *app) userCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user <user>",
		Short: "Shows a run-as user's active keys and shared limits",
	}
	cmd.RunE = a.run([]string{"user"}, func(cmd *cobra.Command, args []string) error {
		var u userObject
		if printed, err := a.fetch(cmd, http.MethodGet, userPath(args[0]), nil, nil, &u); printed || err != nil {
			return err
		}
		return writeUser(a.stdout, &u)
	})
	return cmd
}

func (a *app) userLimitsCmd() *cobra.Command {
	var rate, quota string
	var remove bool
	cmd := &cobra.Command{
		Use:   "user-limits <user> [--rate <n>/<duration>|none] [--quota <n>/day|month|none] [--delete]",
		Short: "Sets or removes the rate and quota shared by all keys of a user",
		Long: `
Sets a rate and/or a quota shared by every key of a run-as user, on top of
each key's own limits: a request must pass both. A flag not given keeps
the user's current value; "none" removes that limit; --delete removes
both. Needs keys:admin (or Caddy's local admin endpoint).`,
		Example: `  keygate apikey user-limits MXINTADM --rate 600/1m --quota 1000000/month
  keygate apikey user-limits MXINTADM --rate none
  keygate apikey user-limits MXINTADM --delete`,
	}
	cmd.Flags().StringVar(&rate, "rate", "", "Shared rate limit as <requests>/<duration>, or none")
	cmd.Flags().StringVar(&quota, "quota", "", "Shared quota as <requests>/day or <requests>/month, or none")
	cmd.Flags().BoolVar(&remove, "delete", false, "Remove the user's limits")
	cmd.RunE = a.run([]string{"user"}, func(cmd *cobra.Command, args []string) error {
		changed := cmd.Flags().Changed
		path := userPath(args[0]) + "/limits"
		if remove {
			if changed("rate") || changed("quota") {
				return usageErrorf("--delete removes both limits; give it without --rate and --quota")
			}
			return a.printUser(cmd, http.MethodDelete, path, nil)
		}
		if !changed("rate") && !changed("quota") {
			return usageErrorf("give --rate, --quota or --delete")
		}
		body := map[string]any{}
		var err error
		if changed("rate") {
			if body["rate"], err = noneOr(rate, "none", func(s string) (any, error) { return parseRate(s) }); err != nil {
				return &usageError{msg: err.Error()}
			}
		}
		if changed("quota") {
			if body["quota"], err = noneOr(quota, "none", func(s string) (any, error) { return parseQuota(s) }); err != nil {
				return &usageError{msg: err.Error()}
			}
		}
		// PUT replaces both limits: keep the current value of the one not given.
		if !changed("rate") || !changed("quota") {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			raw, err := c.do(cmd.Context(), http.MethodGet, userPath(args[0]), nil, nil)
			if err != nil {
				return err
			}
			var cur userObject
			if err := decode(raw, &cur); err != nil {
				return err
			}
			if !changed("rate") && cur.Rate != nil {
				body["rate"] = cur.Rate
			}
			if !changed("quota") && cur.Quota != nil {
				body["quota"] = cur.Quota
			}
		}
		if body["rate"] == nil && body["quota"] == nil {
			return a.printUser(cmd, http.MethodDelete, path, nil)
		}
		return a.printUser(cmd, http.MethodPut, path, body)
	})
	return cmd
}

func (a *app) printUser(cmd *cobra.Command, method, path string, in any) error {
	var u userObject
	if printed, err := a.fetch(cmd, method, path, nil, in, &u); printed || err != nil {
		return err
	}
	return writeUser(a.stdout, &u)
}

func writeUser(w io.Writer, u *userObject) error {
	_, err := fmt.Fprintf(w, "user:         %s\nactive keys:  %d\nshared rate:  %s\nshared quota: %s\n",
		clean(u.User), u.ActiveKeys, u.Rate.String(), u.Quota.String())
	return err
}
