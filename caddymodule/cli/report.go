package cli

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
)

// usageTotals is GET /usage, the admin API's own wire type.
type usageTotals = admin.Report

func (a *app) reportCmd() *cobra.Command {
	var from, to, user, by string
	var asCSV bool
	cmd := &cobra.Command{
		Use:   "report [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--user <user>] [--by area|status] [--csv]",
		Short: "Shows every key's requests in a range: the licence report",
		Long: `
Shows the requests of every key (or of one run-as user's keys) over a range
of UTC days, by default the last 30, with the total. --by area adds a
column per area, --by status one per answer class. --csv prints CSV
(id,name,user,requests, then those columns) for a spreadsheet.`,
		Example: `  keygate apikey report --from 2026-11-01 --to 2026-11-30
  keygate apikey report --by area
  keygate apikey report --from 2026-11-01 --to 2026-11-30 --csv > november.csv`,
	}
	cmd.Flags().StringVar(&from, "from", "", "First day, YYYY-MM-DD")
	cmd.Flags().StringVar(&to, "to", "", "Last day, YYYY-MM-DD")
	cmd.Flags().StringVar(&user, "user", "", "Only the keys of this run-as user")
	cmd.Flags().StringVar(&by, "by", "", "Split every key's requests by area or status")
	cmd.Flags().BoolVar(&asCSV, "csv", false, "Print CSV")
	cmd.RunE = a.run(nil, func(cmd *cobra.Command, _ []string) error {
		q, err := dayFlags(cmd, from, to)
		if err != nil {
			return err
		}
		setIf(q, "user", user)
		if err := byFlag(q, by); err != nil {
			return err
		}
		if asCSV {
			q.Set("format", "csv")
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			body, err := c.do(cmd.Context(), http.MethodGet, "/apikey/usage", q, nil)
			if err != nil {
				return err
			}
			_, err = a.stdout.Write(body)
			return err
		}
		var r usageTotals
		if printed, err := a.fetch(cmd, http.MethodGet, "/apikey/usage", q, nil, &r); printed || err != nil {
			return err
		}
		return writeReport(a.stdout, &r)
	})
	return cmd
}

func writeReport(w io.Writer, r *usageTotals) error {
	names := slices.Sorted(maps.Keys(r.By))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "ID\tNAME\tUSER\tREQUESTS")
	for _, name := range names {
		fmt.Fprintf(tw, "\t%s", cell(strings.ToUpper(name)))
	}
	fmt.Fprintln(tw)
	for _, k := range r.Keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d", cell(k.ID), cell(k.Name), cell(k.User), k.Requests)
		for _, name := range names {
			fmt.Fprintf(tw, "\t%d", k.By[name])
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintf(tw, "\t\ttotal\t%d", r.Total)
	for _, name := range names {
		fmt.Fprintf(tw, "\t%d", r.By[name])
	}
	fmt.Fprintln(tw)
	return tw.Flush()
}
