package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// createRequest is the body of POST /keys and POST /keys/import.
type createRequest struct {
	Name         string      `json:"name"`
	Description  string      `json:"description,omitempty"`
	User         string      `json:"user"`
	Rights       []string    `json:"rights"`
	ExpiresAt    string      `json:"expires_at,omitempty"`
	ExpiresIn    string      `json:"expires_in,omitempty"`
	Rate         *rateLimit  `json:"rate,omitempty"`
	Quota        *quotaLimit `json:"quota,omitempty"`
	AllowedIPs   []string    `json:"allowed_ips,omitempty"`
	Environments []string    `json:"environments,omitempty"`
	APIKey       string      `json:"apikey,omitempty"`
	SHA256       string      `json:"sha256,omitempty"`
}

// keyFlags are the key fields shared by create and import.
type keyFlags struct {
	name, user, description, rights string
	expiresIn, expiresAt            string
	rate, quota                     string
	allowedIPs, environments        string
}

func (f *keyFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.name, "name", "", "Name of the key (required)")
	fl.StringVar(&f.user, "user", "", "User the key acts as, e.g. MXINTADM (required)")
	fl.StringVar(&f.description, "description", "", "Free-text description")
	fl.StringVar(&f.rights, "rights", "", "Comma-separated rights, e.g. assets:read,workorders:write (required)")
	fl.StringVar(&f.expiresIn, "expires-in", "", "Expire after this duration, e.g. 720h")
	fl.StringVar(&f.expiresAt, "expires-at", "", "Expire at this RFC 3339 time, e.g. 2027-01-31T00:00:00Z")
	fl.StringVar(&f.rate, "rate", "", "Rate limit as <requests>/<duration>, e.g. 100/1m")
	fl.StringVar(&f.quota, "quota", "", "Quota as <requests>/day or <requests>/month, e.g. 10000/month")
	fl.StringVar(&f.allowedIPs, "allowed-ips", "", "Comma-separated client addresses or CIDRs the key works from, e.g. 10.20.0.0/16,2001:db8::7 (default: anywhere)")
	fl.StringVar(&f.environments, "environments", "", "Comma-separated handler environments that accept the key, e.g. prod (default: only handlers without one)")
}

// request validates the flags and builds the request body.
func (f *keyFlags) request(cmd *cobra.Command) (*createRequest, error) {
	changed := cmd.Flags().Changed
	req := &createRequest{Name: f.name, User: f.user, Description: f.description}
	if strings.TrimSpace(f.name) == "" {
		return nil, usageErrorf("--name is required")
	}
	if strings.TrimSpace(f.user) == "" {
		return nil, usageErrorf("--user is required")
	}
	rights, err := parseRights(f.rights)
	if err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	req.Rights = rights
	if changed("expires-in") && changed("expires-at") {
		return nil, usageErrorf("use either --expires-in or --expires-at, not both")
	}
	if changed("expires-in") {
		if req.ExpiresIn, err = parseDuration("--expires-in", f.expiresIn); err != nil {
			return nil, &usageError{msg: err.Error()}
		}
	}
	if changed("expires-at") {
		if _, err := time.Parse(time.RFC3339, f.expiresAt); err != nil {
			return nil, usageErrorf("invalid --expires-at %q: want an RFC 3339 time such as 2027-01-31T00:00:00Z", f.expiresAt)
		}
		req.ExpiresAt = f.expiresAt
	}
	if changed("rate") {
		if req.Rate, err = parseRate(f.rate); err != nil {
			return nil, &usageError{msg: err.Error()}
		}
	}
	if changed("quota") {
		if req.Quota, err = parseQuota(f.quota); err != nil {
			return nil, &usageError{msg: err.Error()}
		}
	}
	req.AllowedIPs = splitList(f.allowedIPs)
	req.Environments = splitList(f.environments)
	return req, nil
}

// splitList splits a comma-separated flag value; the server validates the
// entries and names a bad one.
func splitList(s string) []string {
	var out []string
	for e := range strings.SplitSeq(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

func (a *app) updateCmd() *cobra.Command {
	var name, description, rights, rate, quota, expiresAt, allowedIPs, environments string
	cmd := &cobra.Command{
		Use:   "update <id> [--name …] [--description …] [--rights …] [--rate …|none] [--quota …|none] [--expires-at …|never] [--allowed-ips …|none] [--environments …|none]",
		Short: "Changes a key's name, rights, limits, expiry or policy",
		Long: `
Changes the given fields of a key (PATCH /keys/{id}); the others stay as
they are. "none" clears a rate, quota, allowed-ips or environments, "never"
clears an expiry. Needs keys:admin (or Caddy's local admin endpoint).`,
		Example: `  keygate apikey update key_7Hs2 --allowed-ips 10.20.0.0/16 --environments prod
  keygate apikey update key_7Hs2 --rate none --quota 5000/day`,
	}
	fl := cmd.Flags()
	fl.StringVar(&name, "name", "", "New name")
	fl.StringVar(&description, "description", "", "New description")
	fl.StringVar(&rights, "rights", "", "New comma-separated rights (replaces them all)")
	fl.StringVar(&rate, "rate", "", "Rate limit as <requests>/<duration>, or none")
	fl.StringVar(&quota, "quota", "", "Quota as <requests>/day or <requests>/month, or none")
	fl.StringVar(&expiresAt, "expires-at", "", "Expiry as an RFC 3339 time, or never")
	fl.StringVar(&allowedIPs, "allowed-ips", "", "Comma-separated addresses or CIDRs, or none (anywhere)")
	fl.StringVar(&environments, "environments", "", "Comma-separated environments, or none")
	cmd.RunE = a.run([]string{"id"}, func(cmd *cobra.Command, args []string) error {
		changed := cmd.Flags().Changed
		patch := map[string]any{}
		if changed("name") {
			patch["name"] = name
		}
		if changed("description") {
			patch["description"] = description
		}
		if changed("rights") {
			r, err := parseRights(rights)
			if err != nil {
				return &usageError{msg: err.Error()}
			}
			patch["rights"] = r
		}
		var err error
		if changed("rate") {
			if patch["rate"], err = noneOr(rate, "none", func(s string) (any, error) { return parseRate(s) }); err != nil {
				return &usageError{msg: err.Error()}
			}
		}
		if changed("quota") {
			if patch["quota"], err = noneOr(quota, "none", func(s string) (any, error) { return parseQuota(s) }); err != nil {
				return &usageError{msg: err.Error()}
			}
		}
		if changed("expires-at") {
			if patch["expires_at"], err = noneOr(expiresAt, "never", func(s string) (any, error) {
				if _, err := time.Parse(time.RFC3339, s); err != nil {
					return nil, fmt.Errorf("invalid --expires-at %q: want an RFC 3339 time such as 2027-01-31T00:00:00Z, or never", s)
				}
				return s, nil
			}); err != nil {
				return &usageError{msg: err.Error()}
			}
		}
		list := func(s string) (any, error) { return splitList(s), nil }
		if changed("allowed-ips") {
			patch["allowed_ips"], _ = noneOr(allowedIPs, "none", list)
		}
		if changed("environments") {
			patch["environments"], _ = noneOr(environments, "none", list)
		}
		if len(patch) == 0 {
			return usageErrorf("nothing to change: give at least one of --name, --description, --rights, --rate, --quota, --expires-at, --allowed-ips, --environments")
		}
		return a.printKey(cmd, http.MethodPatch, keyPath(args[0]), patch, "Updated key %s.\n\n")
	})
	return cmd
}

// noneOr returns nil (JSON null: clear the field) for the word none, else
// parse's value.
func noneOr(v, none string, parse func(string) (any, error)) (any, error) {
	if strings.EqualFold(strings.TrimSpace(v), none) {
		return nil, nil
	}
	return parse(v)
}

func (a *app) createCmd() *cobra.Command {
	var f keyFlags
	var out string
	cmd := &cobra.Command{
		Use:   "create --name <name> --user <user> --rights <rights> [flags]",
		Short: "Creates a key; its secret is shown once",
		Long: `
Creates an API key and prints its secret once. The secret cannot be read
back later; if it is lost, rotate the key.

With --out FILE the secret is written to FILE, which must not exist yet
and is created with mode 0600, and only the key's id is printed. The file
is checked before anything is sent, so no key is created if it cannot be
written. With --out and --json the JSON is printed without the secret.`,
		Example: `  keygate apikey create --name mx-int --user MXINTADM \
      --rights assets:read,workorders:write --expires-in 720h \
      --rate 100/1m --quota 10000/month --out mx-int.apikey`,
	}
	f.register(cmd)
	cmd.Flags().StringVar(&out, "out", "", "Write the key to this new file (mode 0600) and print only the id")
	cmd.RunE = a.run(nil, func(cmd *cobra.Command, _ []string) error {
		req, err := f.request(cmd)
		if err != nil {
			return err
		}
		return a.mint(cmd, http.MethodPost, "/apikey/keys", req, out, "Created")
	})
	return cmd
}

func (a *app) rotateCmd() *cobra.Command {
	var grace, out string
	cmd := &cobra.Command{
		Use:   "rotate <id> [--grace <duration>] [--out <file>]",
		Short: "Issues a new secret for a key; it is shown once",
		Long: `
Issues a new secret for the key with the given id and prints it once.
The old secret stops working at once, or after --grace, during which both
work.

--out FILE writes the new secret to a new file with mode 0600 and prints
only the id, as for 'create'.`,
		Example: `  keygate apikey rotate key_7Hs2 --grace 24h`,
	}
	cmd.Flags().StringVar(&grace, "grace", "", "Keep the old secret working for this long, e.g. 24h")
	cmd.Flags().StringVar(&out, "out", "", "Write the key to this new file (mode 0600) and print only the id")
	cmd.RunE = a.run([]string{"id"}, func(cmd *cobra.Command, args []string) error {
		body := map[string]string{}
		if cmd.Flags().Changed("grace") {
			g, err := parseDuration("--grace", grace)
			if err != nil {
				return &usageError{msg: err.Error()}
			}
			body["grace"] = g
		}
		if err := a.mint(cmd, http.MethodPost, keyPath(args[0])+"/rotate", body, out, "Rotated"); err != nil {
			return err
		}
		if out == "" && !jsonOutput(cmd) {
			if g := body["grace"]; g != "" {
				fmt.Fprintf(a.stdout, "The previous secret keeps working for %s.\n", g)
			} else {
				fmt.Fprintln(a.stdout, "The previous secret no longer works.")
			}
		}
		return nil
	})
	return cmd
}

// mint sends a request that returns a new secret (create, rotate) and
// shows it once, or writes it to a new file named out.
func (a *app) mint(cmd *cobra.Command, method, path string, in any, out, verb string) error {
	c, err := a.client(cmd)
	if err != nil {
		return err
	}
	var f *os.File
	if out != "" {
		// Created before the request, with O_EXCL: an existing file (or
		// symlink) is never overwritten, and no key is minted that could
		// not be saved.
		f, err = os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return usageErrorf("--out %s: file already exists; refusing to overwrite it (nothing was sent)", out)
		}
		if err != nil {
			return usageErrorf("--out: %v (nothing was sent)", err)
		}
	}
	abandon := func() {
		if f != nil {
			f.Close()
			os.Remove(out)
		}
	}

	body, err := c.do(cmd.Context(), method, path, nil, in)
	if err != nil {
		abandon()
		return err
	}
	var k keyObject
	if err := decode(body, &k); err != nil {
		abandon()
		return err
	}

	if f == nil {
		if jsonOutput(cmd) {
			return writeJSON(a.stdout, body)
		}
		fmt.Fprintf(a.stdout, "%s key %s.\n\n", verb, clean(k.ID))
		if err := writeKeyDetail(a.stdout, &k); err != nil {
			return err
		}
		if k.Key == "" {
			return fmt.Errorf("the response carried no key")
		}
		writeSecret(a.stdout, k.Key)
		return nil
	}

	if k.Key == "" {
		abandon()
		return fmt.Errorf("the response for key %s carried no secret; nothing was written to %s", clean(k.ID), out)
	}
	_, err = io.WriteString(f, k.Key+"\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out)
		return fmt.Errorf("key %s: the new secret could not be written to %s: %v; rotate the key to get another", clean(k.ID), out, err)
	}
	fmt.Fprintf(a.stderr, "wrote the secret of key %s to %s (mode 0600)\n", clean(k.ID), out)
	if jsonOutput(cmd) {
		redacted, err := withoutKey(body)
		if err != nil {
			return err
		}
		return writeJSON(a.stdout, redacted)
	}
	fmt.Fprintln(a.stdout, k.ID)
	return nil
}

func (a *app) importCmd() *cobra.Command {
	var f keyFlags
	var apikey, apikeyFile, sha string
	cmd := &cobra.Command{
		Use:   "import --name <name> --user <user> --rights <rights> (--apikey-file <file> | --apikey <key> | --sha256 <hex>) [flags]",
		Short: "Imports an existing key, or its SHA-256 digest",
		Long: `
Registers a key that was created elsewhere, e.g. one an external system
already sends to Maximo. Give the key with --apikey-file (a file holding
only the key, or - for stdin, so it stays out of the shell history), with
--apikey, or give only its SHA-256 digest with --sha256 when the source
system holds nothing but hashes. The server rejects weak keys and says why.`,
		Example: `  keygate apikey import --name legacy --user MXINTADM --rights assets:read --apikey-file legacy.key
  vault read -field=key secret/legacy | keygate apikey import --name legacy --user MXINTADM --rights assets:read --apikey-file -`,
	}
	f.register(cmd)
	cmd.Flags().StringVar(&apikey, "apikey", "", "The key itself (prefer --apikey-file: this one lands in the shell history)")
	cmd.Flags().StringVar(&apikeyFile, "apikey-file", "", "File holding the key, or - for stdin")
	cmd.Flags().StringVar(&sha, "sha256", "", "Hex SHA-256 digest of the key, instead of the key")
	cmd.RunE = a.run(nil, func(cmd *cobra.Command, _ []string) error {
		req, err := f.request(cmd)
		if err != nil {
			return err
		}
		changed := cmd.Flags().Changed
		n := 0
		for _, name := range []string{"apikey", "apikey-file", "sha256"} {
			if changed(name) {
				n++
			}
		}
		if n != 1 {
			return usageErrorf("give exactly one of --apikey-file, --apikey or --sha256")
		}
		switch {
		case changed("apikey"):
			req.APIKey = strings.TrimSpace(apikey)
			if req.APIKey == "" {
				return usageErrorf("--apikey is empty")
			}
		case changed("apikey-file"):
			if req.APIKey, err = readSecret(apikeyFile, a.stdin); err != nil {
				return &usageError{msg: err.Error()}
			}
		default:
			if req.SHA256, err = parseSHA256(sha); err != nil {
				return &usageError{msg: err.Error()}
			}
		}
		return a.printKey(cmd, http.MethodPost, "/apikey/keys/import", req, "Imported key %s.\n\n")
	})
	return cmd
}

func (a *app) showCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show <id>",
		Short: "Shows one key",
	}
	cmd.RunE = a.run([]string{"id"}, func(cmd *cobra.Command, args []string) error {
		return a.printKey(cmd, http.MethodGet, keyPath(args[0]), nil, "")
	})
	return cmd
}

func (a *app) revokeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke <id>",
		Short: "Revokes a key for good",
		Long: `
Revokes the key with the given id. It stops working at once and for good,
but stays listed and audited. Revoking a revoked key is not an error.`,
	}
	cmd.RunE = a.run([]string{"id"}, func(cmd *cobra.Command, args []string) error {
		return a.printKey(cmd, http.MethodDelete, keyPath(args[0]), nil, "Revoked key %s.\n\n")
	})
	return cmd
}

// fetch sends one request to the admin API. With --json it prints the
// answer as it came and reports printed; otherwise it decodes it into out.
func (a *app) fetch(cmd *cobra.Command, method, path string, q url.Values, in, out any) (printed bool, err error) {
	c, err := a.client(cmd)
	if err != nil {
		return false, err
	}
	body, err := c.do(cmd.Context(), method, path, q, in)
	if err != nil {
		return false, err
	}
	if jsonOutput(cmd) {
		return true, writeJSON(a.stdout, body)
	}
	return false, decode(body, out)
}

// printKey requests a key object and prints it: JSON, or a heading (a
// format with the id, if not empty) and the detail block.
func (a *app) printKey(cmd *cobra.Command, method, path string, in any, heading string) error {
	var k keyObject
	if printed, err := a.fetch(cmd, method, path, nil, in, &k); printed || err != nil {
		return err
	}
	if heading != "" {
		fmt.Fprintf(a.stdout, heading, clean(k.ID))
	}
	return writeKeyDetail(a.stdout, &k)
}

func (a *app) revokeUserCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke-user <user>",
		Short: "Revokes every key of a user",
	}
	cmd.RunE = a.run([]string{"user"}, func(cmd *cobra.Command, args []string) error {
		var res struct {
			Revoked int64 `json:"revoked"`
		}
		if printed, err := a.fetch(cmd, http.MethodDelete, "/apikey/users/"+url.PathEscape(args[0]), nil, nil, &res); printed || err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "Revoked %d key(s) of user %s.\n", res.Revoked, clean(args[0]))
		return nil
	})
	return cmd
}

func (a *app) listCmd() *cobra.Command {
	var user, name, status, cursor string
	var limit int
	var all bool
	cmd := &cobra.Command{
		Use:   "list [--user <user>] [--name <name>] [--status active|expired|revoked] [--limit <n>] [--cursor <c> | --all]",
		Short: "Lists keys (never their secrets)",
		Long: `
Lists keys, filtered by user, name and status, one page at a time: when
there are more, the cursor of the next page is printed to stderr. --all
follows the cursors and prints every key (with --json, as one "keys" list).`,
	}
	fl := cmd.Flags()
	fl.StringVar(&user, "user", "", "Only keys of this user")
	fl.StringVar(&name, "name", "", "Only keys with this name")
	fl.StringVar(&status, "status", "", "Only keys with this status: active, expired or revoked")
	fl.IntVar(&limit, "limit", 0, "Keys per page (default: the server's)")
	fl.StringVar(&cursor, "cursor", "", "Start at this page cursor, from a previous list")
	fl.BoolVar(&all, "all", false, "Fetch every page")
	cmd.RunE = a.run(nil, func(cmd *cobra.Command, _ []string) error {
		switch status {
		case "", "active", "expired", "revoked":
		default:
			return usageErrorf("invalid --status %q: want active, expired or revoked", status)
		}
		if limit < 0 {
			return usageErrorf("invalid --limit %d: must be positive", limit)
		}
		if all && cursor != "" {
			return usageErrorf("use either --all or --cursor, not both")
		}
		q := url.Values{}
		setIf(q, "user", user)
		setIf(q, "name", name)
		setIf(q, "status", status)
		if limit > 0 {
			q.Set("limit", strconv.Itoa(limit))
		}
		setIf(q, "cursor", cursor)
		c, err := a.client(cmd)
		if err != nil {
			return err
		}

		var keys []json.RawMessage
		var next string
		seen := map[string]bool{}
		for {
			body, err := c.do(cmd.Context(), http.MethodGet, "/apikey/keys", q, nil)
			if err != nil {
				return err
			}
			if jsonOutput(cmd) && !all {
				return writeJSON(a.stdout, body)
			}
			var page keyPage
			if err := decode(body, &page); err != nil {
				return err
			}
			keys = append(keys, page.Keys...)
			next = ""
			if page.Next != nil {
				next = *page.Next
			}
			if !all || next == "" {
				break
			}
			if seen[next] {
				return fmt.Errorf("the admin endpoint returned cursor %q twice; stopping", clean(next))
			}
			seen[next] = true
			q.Set("cursor", next)
		}

		if jsonOutput(cmd) {
			if keys == nil {
				keys = []json.RawMessage{}
			}
			b, err := json.Marshal(map[string]any{"keys": keys, "next": nil})
			if err != nil {
				return err
			}
			return writeJSON(a.stdout, b)
		}
		objs := make([]keyObject, len(keys))
		for i, raw := range keys {
			if err := decode(raw, &objs[i]); err != nil {
				return err
			}
		}
		if len(objs) == 0 {
			fmt.Fprintln(a.stdout, "No keys found.")
		} else if err := writeKeyTable(a.stdout, objs); err != nil {
			return err
		}
		if next != "" {
			fmt.Fprintf(a.stderr, "More keys: run again with --cursor %s, or use --all.\n", clean(next))
		}
		return nil
	})
	return cmd
}

func (a *app) usageCmd() *cobra.Command {
	var from, to, by string
	cmd := &cobra.Command{
		Use:   "usage <id> [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--by area|status]",
		Short: "Shows a key's requests per day",
		Long: `
Shows how many requests a key made per day (UTC), by default over the
last 30 days. --by area adds a column per area the requests were judged
in; --by status one per class of the answer the client got (2xx, 4xx …).`,
		Example: `  keygate apikey usage key_7Hs2 --by area
  keygate apikey usage key_7Hs2 --from 2026-11-01 --to 2026-11-30 --by status`,
	}
	cmd.Flags().StringVar(&from, "from", "", "First day, YYYY-MM-DD")
	cmd.Flags().StringVar(&to, "to", "", "Last day, YYYY-MM-DD")
	cmd.Flags().StringVar(&by, "by", "", "Split each day by area or status")
	cmd.RunE = a.run([]string{"id"}, func(cmd *cobra.Command, args []string) error {
		q, err := dayFlags(cmd, from, to)
		if err != nil {
			return err
		}
		if err := byFlag(q, by); err != nil {
			return err
		}
		var u usageReport
		if printed, err := a.fetch(cmd, http.MethodGet, keyPath(args[0])+"/usage", q, nil, &u); printed || err != nil {
			return err
		}
		return writeUsageTable(a.stdout, &u)
	})
	return cmd
}

// byFlag checks --by and sets it in q.
func byFlag(q url.Values, by string) error {
	switch by {
	case "":
		return nil
	case "area", "status":
		q.Set("by", by)
		return nil
	}
	return usageErrorf("--by %q must be area or status", by)
}

func (a *app) licenseCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "license",
		Short: "Shows how many active keys the license allows and uses",
	}
	cmd.RunE = a.run(nil, func(cmd *cobra.Command, _ []string) error {
		var l licenseInfo
		if printed, err := a.fetch(cmd, http.MethodGet, "/apikey/license", nil, nil, &l); printed || err != nil {
			return err
		}
		if l.Limit == nil {
			fmt.Fprintf(a.stdout, "%d active key(s) in use; no license limit.\n", l.InUse)
			return nil
		}
		fmt.Fprintf(a.stdout, "%d of %d active keys in use (%d available).\n", l.InUse, *l.Limit, max(*l.Limit-l.InUse, 0))
		return nil
	})
	return cmd
}

func (a *app) auditCmd() *cobra.Command {
	var key, cursor string
	var limit int
	cmd := &cobra.Command{
		Use:   "audit [--key <id>] [--limit <n>] [--cursor <c>]",
		Short: "Shows the audit log, newest first",
		Long: `
Shows the audit log, optionally only the events of one key, one page at a
time: when there are more, the cursor of the next page is printed to stderr.`,
	}
	cmd.Flags().StringVar(&key, "key", "", "Only events of this key id")
	cmd.Flags().IntVar(&limit, "limit", 0, "Events per page (default: the server's)")
	cmd.Flags().StringVar(&cursor, "cursor", "", "Start at this page cursor, from a previous audit")
	cmd.RunE = a.run(nil, func(cmd *cobra.Command, _ []string) error {
		if limit < 0 {
			return usageErrorf("invalid --limit %d: must be positive", limit)
		}
		q := url.Values{}
		setIf(q, "key", key)
		if limit > 0 {
			q.Set("limit", strconv.Itoa(limit))
		}
		setIf(q, "cursor", cursor)
		var page auditPage
		if printed, err := a.fetch(cmd, http.MethodGet, "/apikey/audit", q, nil, &page); printed || err != nil {
			return err
		}
		if len(page.Events) == 0 {
			fmt.Fprintln(a.stdout, "No audit events found.")
		} else if err := writeAuditTable(a.stdout, page.Events); err != nil {
			return err
		}
		if page.Next != nil && *page.Next != "" {
			fmt.Fprintf(a.stderr, "More events: run again with --cursor %s.\n", clean(*page.Next))
		}
		return nil
	})
	return cmd
}

func (a *app) areasCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "areas",
		Short: "Lists the configured areas that rights can name",
		Long: `
Lists the areas of the apikey app: the names rights use (assets:read,
workorders:write), the path patterns each covers as configured, the
access level every method needs where an area sets one, and the GraphQL
root fields mapped to it.`,
	}
	cmd.RunE = a.run(nil, func(cmd *cobra.Command, _ []string) error {
		var l areaList
		if printed, err := a.fetch(cmd, http.MethodGet, "/apikey/areas", nil, nil, &l); printed || err != nil {
			return err
		}
		if len(l.Areas) == 0 {
			fmt.Fprintln(a.stdout, "No areas are configured; add area lines to the apikey app.")
			return nil
		}
		return writeAreaTable(a.stdout, l.Areas)
	})
	return cmd
}

func (a *app) whoamiCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Shows the identity the admin endpoint acts as",
		Long: `
Shows the key the admin API sees as the caller. On Caddy's local admin
endpoint, which the CLI uses, that is "local", acting as keys:admin.`,
	}
	cmd.RunE = a.run(nil, func(cmd *cobra.Command, _ []string) error {
		var w whoami
		if printed, err := a.fetch(cmd, http.MethodGet, "/apikey/whoami", nil, nil, &w); printed || err != nil {
			return err
		}
		return writeWhoami(a.stdout, &w)
	})
	return cmd
}

// keyPath is the admin API path of one key.
func keyPath(id string) string {
	return "/apikey/keys/" + url.PathEscape(id)
}

func setIf(q url.Values, name, value string) {
	if value != "" {
		q.Set(name, value)
	}
}

// dayFlags checks --from and --to (YYYY-MM-DD, in order) and returns them
// as query parameters; absent flags are left to the server's defaults.
func dayFlags(cmd *cobra.Command, from, to string) (url.Values, error) {
	q := url.Values{}
	var fromDay, toDay time.Time
	var err error
	if cmd.Flags().Changed("from") {
		if fromDay, err = parseDate("--from", from); err != nil {
			return nil, &usageError{msg: err.Error()}
		}
		q.Set("from", from)
	}
	if cmd.Flags().Changed("to") {
		if toDay, err = parseDate("--to", to); err != nil {
			return nil, &usageError{msg: err.Error()}
		}
		q.Set("to", to)
	}
	if !fromDay.IsZero() && !toDay.IsZero() && toDay.Before(fromDay) {
		return nil, usageErrorf("--to %s is before --from %s", to, from)
	}
	return q, nil
}
