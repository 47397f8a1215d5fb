package main

import (
	"encoding/json"

	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

// wrapRun wraps Caddy's run command:
//
//   - before starting, it refuses ports another process already serves
//     (Caddy binds with SO_REUSEPORT, so a second instance on the same ports
//     would otherwise start silently and share the traffic);
//   - a failing start prints its reason on stderr, whatever the configured
//     logs (Caddy logs it to the configured log, which may be a file);
//   - once the configuration runs, one "keygate ready" line on stderr names
//     the sites, the admin address and the key store.
func wrapRun(c *cobra.Command) {
	orig := c.RunE
	c.RunE = func(cmd *cobra.Command, args []string) error {
		plan := preflight(cmd)
		if plan != nil {
			if err := plan.checkPorts(); err != nil {
				fmt.Fprintf(os.Stderr, "keygate: not started: %v\n", err)
				cmd.SilenceErrors = true
				return err
			}
			go plan.announceWhenReady()
		}
		err := orig(cmd, args)
		if err != nil {
			fmt.Fprintf(os.Stderr, "keygate: not started: %v\n", err)
		}
		return err
	}
}

// startPlan is what the configuration about to be run will listen on.
type startPlan struct {
	sites []siteAddr
	admin string // "" when the admin endpoint is disabled
	store string
}

type siteAddr struct {
	listen string
	tls    bool
}

// preflight loads the configuration the way run will, and returns what it
// listens on; nil when there is nothing to check (--resume, --envfile, no
// config) or the config does not load (run then reports why).
func preflight(cmd *cobra.Command) *startPlan {
	fl := cmd.Flags()
	if resume, _ := fl.GetBool("resume"); resume {
		return nil
	}
	// Variables from --envfile are loaded by run itself; without them the
	// addresses read here could differ from the ones run will use.
	if envs, err := fl.GetStringArray("envfile"); err == nil && len(envs) > 0 {
		return nil
	}
	file, _ := fl.GetString("config")
	adapter, _ := fl.GetString("adapter")
	raw, _, _, err := caddycmd.LoadConfig(file, adapter)
	if err != nil || len(raw) == 0 {
		return nil
	}
	return planFromJSON(raw)
}

// planFromJSON reads the listen addresses, the admin address and the store
// from a JSON config.
func planFromJSON(raw []byte) *startPlan {
	var cfg struct {
		Admin *struct {
			Disabled bool   `json:"disabled"`
			Listen   string `json:"listen"`
		} `json:"admin"`
		Apps struct {
			HTTP *struct {
				Servers map[string]struct {
					Listen   []string          `json:"listen"`
					TLSPols  []json.RawMessage `json:"tls_connection_policies"`
					AutoHTTP *struct {
						Disable bool `json:"disable"`
					} `json:"automatic_https"`
				} `json:"servers"`
			} `json:"http"`
			Apikey *struct {
				Storage *struct {
					Type string `json:"type"`
					Path string `json:"path"`
				} `json:"storage"`
			} `json:"apikey"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil
	}
	p := &startPlan{admin: caddy.DefaultAdminListen}
	if cfg.Admin != nil {
		if cfg.Admin.Disabled {
			p.admin = ""
		} else if cfg.Admin.Listen != "" {
			p.admin = cfg.Admin.Listen
		}
	}
	if cfg.Apps.HTTP != nil {
		for _, name := range slices.Sorted(maps.Keys(cfg.Apps.HTTP.Servers)) {
			srv := cfg.Apps.HTTP.Servers[name]
			listen := srv.Listen
			if len(listen) == 0 {
				listen = []string{":443"}
			}
			for _, l := range listen {
				p.sites = append(p.sites, siteAddr{listen: l, tls: len(srv.TLSPols) > 0})
			}
		}
	}
	switch {
	case cfg.Apps.Apikey == nil:
		p.store = "none (no apikey app)"
	case cfg.Apps.Apikey.Storage == nil || cfg.Apps.Apikey.Storage.Type == "" || cfg.Apps.Apikey.Storage.Type == "file":
		path := filepath.Join(caddy.AppDataDir(), "keygate", "keys.db")
		if s := cfg.Apps.Apikey.Storage; s != nil && s.Path != "" {
			path = s.Path
		}
		p.store = "file " + path
	default:
		p.store = cfg.Apps.Apikey.Storage.Type // never the DSN: it may hold a password
	}
	return p
}

// checkPorts refuses to start when a TCP address the config listens on is
// already served by another process. Probing binds without SO_REUSEPORT,
// which fails while any socket (Caddy's included) holds the port.
func (p *startPlan) checkPorts() error {
	addrs := make([]string, 0, len(p.sites)+1)
	for _, s := range p.sites {
		addrs = append(addrs, s.listen)
	}
	if p.admin != "" {
		addrs = append(addrs, p.admin)
	}
	repl := caddy.NewReplacer()
	for _, a := range addrs {
		na, err := caddy.ParseNetworkAddress(repl.ReplaceKnown(a, ""))
		if err != nil || na.IsUnixNetwork() || na.IsFdNetwork() || !strings.HasPrefix(na.Network, "tcp") {
			continue // Caddy itself reports malformed addresses
		}
		for port := na.StartPort; port <= na.EndPort; port++ {
			hostport := net.JoinHostPort(na.Host, strconv.FormatUint(uint64(port), 10))
			l, err := net.Listen(na.Network, hostport)
			if err != nil {
				if addrInUse(err) {
					return fmt.Errorf("%s is already served by another process (another keygate or Caddy?); stop it or change the port in the config", displayAddr(hostport))
				}
				continue // Caddy reports other listen errors itself
			}
			l.Close()
		}
	}
	return nil
}

func displayAddr(hostport string) string {
	if strings.HasPrefix(hostport, ":") {
		return "port " + hostport[1:] + " (all interfaces)"
	}
	return hostport
}

// announceWhenReady prints the ready line once the configuration runs. It
// returns silently if the process exits first (run failed).
func (p *startPlan) announceWhenReady() {
	for caddy.ActiveContext().Context == nil {
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Fprintln(os.Stderr, p.readyLine())
}

func (p *startPlan) readyLine() string {
	urls := make([]string, 0, len(p.sites))
	for _, s := range p.sites {
		urls = append(urls, siteURL(s))
	}
	admin := p.admin
	if admin == "" {
		admin = "off"
	}
	return fmt.Sprintf("keygate ready: sites %s; admin %s; store %s", strings.Join(urls, ", "), admin, p.store)
}

func siteURL(s siteAddr) string {
	host, port, err := net.SplitHostPort(s.listen)
	if err != nil {
		return s.listen
	}
	scheme := "http"
	if s.tls || port == "443" {
		scheme = "https"
	}
	where := ""
	if host == "" {
		host, where = "localhost", " (all interfaces)"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + where
}
