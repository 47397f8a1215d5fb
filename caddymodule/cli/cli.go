// Package cli adds the `apikey` subcommand to a Caddy binary built with
// keygate: `apikey create|import|list|show|rotate|revoke|revoke-user|usage|
// license|audit|areas|whoami`. The subcommands are thin HTTP clients of the
// admin API that the `admin.api.apikey` module mounts under /apikey/ on
// Caddy's local admin endpoint; they reach it the way Caddy's own `reload`
// and `stop` do (--address, --config/--adapter, CADDY_ADMIN, unix sockets).
//
// Importing the package for its side effect registers the command:
//
//	import _ "github.com/keygate/keygate/caddymodule/cli"
//
// Exit codes, which scripts may rely on: 0 success; 1 the server refused
// the request (its error message and code are printed to stderr) or could
// not be reached; 2 usage error (bad flags or arguments, detected before
// any request is made).
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

// Exit codes of every apikey subcommand.
const (
	exitOK      = 0 // success
	exitRefused = 1 // the server refused, or could not be reached
	exitUsage   = 2 // bad flags or arguments; nothing was sent
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "apikey",
		Usage: "<create|import|list|show|rotate|revoke|revoke-user|usage|license|audit|events|areas|whoami> [flags]",
		Short: "Manages keygate API keys through the admin endpoint",
		Long: `
Creates, lists, rotates and revokes keygate API keys, and shows their
usage, the license, the audit log, undelivered webhook events and the
configured areas, by calling
the keygate admin API on Caddy's local admin endpoint (mounted there by
the admin.api.apikey module under /apikey/).

The admin endpoint is found like Caddy's own 'reload' and 'stop' find it:
--address if given, else the admin address in the --config file, else
'` + caddy.DefaultAdminListen + `' (set by CADDY_ADMIN or Caddy's default).
Unix sockets are given as unix//path/to/socket.

Output is a table or a short text by default; --json prints the server's
JSON response instead.

Exit codes: 0 success; 1 the server refused the request (its message is
printed) or could not be reached; 2 usage error (nothing was sent).`,
		CobraFunc: func(cmd *cobra.Command) {
			a := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, exit: caddyExit}
			a.setup(cmd)
		},
	})
}

// errReported is returned to cobra once the failure has been printed.
var errReported = errors.New("apikey: error already reported")

// caddyExit turns an exit code into what caddycmd.Main turns back into
// that code: nil exits 0 and any plain error exits 1. Other codes are only
// reachable through caddycmd's unexported exitError, which
// WrapCommandFuncForCobra returns for a status above 1; with a nil error it
// logs nothing. The apikey commands set SilenceErrors, so cobra prints
// nothing either: the message has already been printed by report.
func caddyExit(cmd *cobra.Command, code int) error {
	switch code {
	case exitOK:
		return nil
	case exitRefused:
		return errReported
	}
	return caddycmd.WrapCommandFuncForCobra(func(caddycmd.Flags) (int, error) {
		return code, nil
	})(cmd, nil)
}

// app holds what the commands write to and read from, and how they exit,
// so that tests can run them in process.
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// exit turns the exit code into the error RunE returns.
	exit func(cmd *cobra.Command, code int) error
}

// usageError is a mistake in flags or arguments: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// setup adds the flags and subcommands to the apikey command.
func (a *app) setup(root *cobra.Command) {
	root.SilenceErrors = true
	root.SilenceUsage = true
	pf := root.PersistentFlags()
	pf.String("address", "", "Address of the administration API listener (default: the --config file's, else "+caddy.DefaultAdminListen+")")
	pf.StringP("config", "c", "", "Configuration file to read the admin address from (if --address is not used)")
	pf.StringP("adapter", "a", "", "Name of config adapter to apply (if --config is used)")
	pf.Bool("json", false, "Print the server's JSON response")

	// Flag mistakes are usage errors (exit 2), not cobra's default exit 1.
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return a.finish(cmd, &usageError{msg: err.Error()})
	})
	root.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return a.finish(cmd, cmd.Help())
		}
		return a.finish(cmd, usageErrorf("unknown command %q for %q", args[0], cmd.CommandPath()))
	}

	for _, sub := range []*cobra.Command{
		a.createCmd(), a.importCmd(), a.listCmd(), a.showCmd(), a.updateCmd(), a.rotateCmd(), a.userCmd(), a.userLimitsCmd(),
		a.revokeCmd(), a.revokeUserCmd(), a.usageCmd(), a.reportCmd(), a.licenseCmd(), a.auditCmd(), a.eventsCmd(),
		a.areasCmd(), a.whoamiCmd(),
	} {
		sub.SilenceErrors = true
		sub.SilenceUsage = true
		root.AddCommand(sub)
	}
}

// run adapts a command body to cobra: it checks the number of positional
// arguments, then reports the outcome and exits with its code.
func (a *app) run(argNames []string, body func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(argNames) {
			if len(argNames) == 0 {
				return a.finish(cmd, usageErrorf("unexpected argument %q", args[0]))
			}
			return a.finish(cmd, usageErrorf("want %d argument(s) <%s>, got %d", len(argNames), argNames[0], len(args)))
		}
		for i, arg := range args {
			if arg == "" || arg == "." || arg == ".." {
				return a.finish(cmd, usageErrorf("invalid <%s> %q", argNames[i], arg))
			}
		}
		return a.finish(cmd, body(cmd, args))
	}
}

// finish reports err and exits with the matching code.
func (a *app) finish(cmd *cobra.Command, err error) error {
	return a.exit(cmd, a.report(cmd, err))
}

// report prints err to stderr and returns the exit code for it.
func (a *app) report(cmd *cobra.Command, err error) int {
	if err == nil {
		return exitOK
	}
	if ue, ok := errors.AsType[*usageError](err); ok {
		fmt.Fprintf(a.stderr, "Error: %s\nRun '%s --help' for usage.\n", ue.msg, cmd.CommandPath())
		return exitUsage
	}
	fmt.Fprintf(a.stderr, "Error: %v\n", err)
	return exitRefused
}

// client returns a client for the admin endpoint the flags point at.
func (a *app) client(cmd *cobra.Command) (*adminClient, error) {
	flags := cmd.Flags()
	addr, _ := flags.GetString("address")
	configFile, _ := flags.GetString("config")
	adapter, _ := flags.GetString("adapter")
	addr, err := caddycmd.DetermineAdminAPIAddress(addr, nil, configFile, adapter)
	if err != nil {
		return nil, usageErrorf("couldn't determine admin API address: %v", err)
	}
	c, err := newAdminClient(addr)
	if err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	return c, nil
}

func jsonOutput(cmd *cobra.Command) bool {
	v, _ := cmd.Flags().GetBool("json")
	return v
}
