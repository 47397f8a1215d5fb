package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
)

func (a *app) eventsCmd() *cobra.Command {
	var failed bool
	var limit int
	cmd := &cobra.Command{
		Use:   "events [--failed] [--limit <n>]",
		Short: "Lists webhook deliveries not yet accepted by their destination",
		Long: `
Lists the webhook outbox: every delivery not yet accepted by its
destination (pending), or with --failed only those whose last attempt
failed, oldest first, with the attempts so far, the next try and the last
error. They are retried with backoff until the destination answers 2xx.`,
	}
	cmd.Flags().BoolVar(&failed, "failed", false, "Only deliveries whose last attempt failed")
	cmd.Flags().IntVar(&limit, "limit", 0, "Deliveries to show (default: the server's)")
	cmd.RunE = a.run(nil, func(cmd *cobra.Command, _ []string) error {
		if limit < 0 {
			return usageErrorf("invalid --limit %d: must be positive", limit)
		}
		q := url.Values{"status": {"pending"}}
		if failed {
			q.Set("status", "failed")
		}
		if limit > 0 {
			q.Set("limit", strconv.Itoa(limit))
		}
		var list admin.DeliveryList
		if printed, err := a.fetch(cmd, http.MethodGet, "/apikey/events", q, nil, &list); printed || err != nil {
			return err
		}
		if len(list.Deliveries) == 0 {
			fmt.Fprintf(a.stdout, "No %s webhook deliveries.\n", q.Get("status"))
			return nil
		}
		if err := writeDeliveryTable(a.stdout, list.Deliveries); err != nil {
			return err
		}
		if list.Total > len(list.Deliveries) {
			fmt.Fprintf(a.stderr, "%d of %d shown; use --limit for more.\n", len(list.Deliveries), list.Total)
		}
		return nil
	})
	return cmd
}

func writeDeliveryTable(w io.Writer, ds []admin.DeliveryJSON) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CREATED\tTYPE\tEVENT\tTARGET\tATTEMPTS\tNEXT\tLAST ERROR")
	for _, d := range ds {
		created, next := d.CreatedAt, d.NextAt
		lastErr := ""
		if d.LastError != nil {
			lastErr = *d.LastError
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", shortTime(&created, "-"), cell(d.Type), cell(d.EventID),
			cell(d.Target), d.Attempts, shortTime(&next, "-"), cell(lastErr))
	}
	return tw.Flush()
}
