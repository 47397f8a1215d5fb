package main

import (
	"fmt"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

// version is keygate's version. Release builds set it with
//
//	go build -ldflags '-X main.version=v1.2.0' ./cmd/keygate
//
// Otherwise it comes from the build info: the module version when keygate
// is built by `go install …@version`, the VCS-derived pseudo-version or
// "(devel)" when built from a checkout.
var version string

// keygateVersion returns version, or the main module's version from the
// build info.
func keygateVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

const longDescription = `keygate enforces API keys in front of an existing REST or GraphQL API —
typically IBM Maximo / Manage or Maintenance Connection — without changing
that API or its clients.

keygate is Caddy with the keygate modules built in. To run it:

	keygate run --config /etc/keygate/Caddyfile

Keys are managed with 'keygate apikey …' (see 'keygate apikey --help'),
through the admin API on Caddy's local admin endpoint, or in the web
console at /keygate/ui/ of a site that mounts apikey_admin.

keygate is upgraded by installing a new keygate build or package, never
with Caddy's 'upgrade' or 'add-package': those would replace this binary
with a stock Caddy that has no keygate modules.

Documentation: docs/ in the keygate repository. The configuration format
and the commands inherited from Caddy are documented at
https://caddyserver.com/docs/.`

// refused are Caddy commands that would replace the running binary with a
// download from caddyserver.com, which has no keygate modules.
var refused = []string{"upgrade", "add-package", "remove-package"}

func init() {
	caddy.CustomBinaryName = "keygate"
	caddy.CustomLongDescription = longDescription

	// caddycmd builds the root command in Main from the commands registered
	// so far, in registration order, and offers no handle on it. The first
	// of these two hidden commands is attached to the root before the second
	// is built, so the second reaches the root through it.
	var anchor *cobra.Command
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "keygate-anchor",
		Short: "Internal: a handle on the root command",
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Hidden = true
			cmd.RunE = func(*cobra.Command, []string) error { return fmt.Errorf("%s is internal", cmd.Name()) }
			anchor = cmd
		},
	})
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "keygate-identity",
		Short: "Internal: makes the root command keygate's",
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Hidden = true
			cmd.RunE = func(*cobra.Command, []string) error { return fmt.Errorf("%s is internal", cmd.Name()) }
			if anchor != nil && anchor.HasParent() {
				root := anchor.Root()
				root.RemoveCommand(anchor)
				customize(root)
			}
		},
	})
}

// customize turns Caddy's root command into keygate's.
func customize(root *cobra.Command) {
	root.Example = `  $ keygate run --config /etc/keygate/Caddyfile
  $ keygate validate --config /etc/keygate/Caddyfile
  $ keygate apikey create --name mx-int --user MXINTADM --rights assets:read
  $ keygate version`
	_, caddyFull := caddy.Version()
	root.Version = versionText(caddyFull)
	root.SetHelpTemplate(`{{with (or .Long .Short)}}{{. | trimTrailingWhitespaces}}

{{end}}{{if or .Runnable .HasSubCommands}}{{.UsageString}}{{end}}`)
	for _, c := range root.Commands() {
		switch c.Name() {
		case "version":
			c.Short = "Prints the keygate version and the Caddy version"
			c.Long = "Prints keygate's version and the version of Caddy it is built on."
			c.RunE = func(cmd *cobra.Command, _ []string) error {
				fmt.Fprintln(cmd.OutOrStdout(), versionText(caddyFull))
				return nil
			}
		case "run":
			wrapRun(c)
		}
		for _, name := range refused {
			if c.Name() == name {
				refuse(c)
			}
		}
	}
}

func versionText(caddyFull string) string {
	return fmt.Sprintf("keygate %s\ncaddy %s", keygateVersion(), caddyFull)
}

// refuse makes c exit 1 with an explanation instead of replacing the binary.
func refuse(c *cobra.Command) {
	c.Hidden = true
	c.Short = "Not available in keygate (would install a Caddy without keygate)"
	c.Long = c.Short
	c.DisableFlagParsing = true
	c.SilenceErrors, c.SilenceUsage = true, true
	name := c.Name()
	c.RunE = func(*cobra.Command, []string) error {
		fmt.Fprintf(os.Stderr, `keygate %s is not available: Caddy's %s replaces the running binary with a
build downloaded from caddyserver.com, which has none of keygate's modules.
Upgrade keygate by installing a new keygate package or build instead
(go build ./cmd/keygate, or xcaddy build --with github.com/keygate/keygate).
`, name, name)
		return errRefused
	}
}

// errRefused is returned once the refusal has been printed; it exits 1.
var errRefused = fmt.Errorf("command refused")
