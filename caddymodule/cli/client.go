package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// maxResponseBytes caps how much of an admin response is read.
const maxResponseBytes = 16 << 20

// requestTimeout bounds one admin request.
const requestTimeout = time.Minute

// adminClient talks to Caddy's local admin endpoint the way
// caddycmd.AdminAPIRequest does (same dialing, same Origin header), but
// hands back error bodies so the server's message can be shown.
type adminClient struct {
	addr   string // as given, for messages
	origin string // scheme and host used in request URLs
	// sendOrigin is false for unix sockets and fds, where caddycmd sends no
	// Origin header either.
	sendOrigin bool
	hc         *http.Client
}

// newAdminClient returns a client for the admin endpoint at adminAddr,
// a Caddy network address such as "localhost:2019" or "unix//run/caddy.sock".
func newAdminClient(adminAddr string) (*adminClient, error) {
	parsed, err := caddy.ParseNetworkAddress(adminAddr)
	if err != nil {
		return nil, fmt.Errorf("invalid admin address %q: %v", adminAddr, err)
	}
	if parsed.PortRangeSize() > 1 {
		return nil, fmt.Errorf("invalid admin address %q: a port range is not allowed", adminAddr)
	}
	c := &adminClient{addr: adminAddr}
	switch {
	case parsed.IsUnixNetwork():
		// The address may carry socket permission bits ("unix//path|0222"),
		// which are not part of the file path.
		if path, _, ok := strings.Cut(parsed.Host, "|"); ok {
			parsed.Host = path
		}
		// The host is never used; 127.0.0.1 keeps it on this machine
		// should anything look at it (see caddycmd.AdminAPIRequest).
		c.origin = "http://127.0.0.1"
	case parsed.IsFdNetwork():
		c.origin = "http://127.0.0.1"
	default:
		c.origin = "http://" + parsed.JoinHostPort(0)
		c.sendOrigin = true
	}
	network, dialAddr := parsed.Network, parsed.JoinHostPort(0)
	var dialer net.Dialer
	c.hc = &http.Client{
		Transport: &http.Transport{
			// Admin endpoints are not always TCP, so dial the configured
			// network whatever the URL says.
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, network, dialAddr)
			},
			Proxy: nil, // never send local admin traffic through a proxy
		},
		// Redirects from the admin endpoint are not expected; surface them.
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return c, nil
}

// responseError is a refusal from the admin API: a status of 400 or more, with
// the documented {"error":{"code","message"}} body when the keygate handler
// answered, or Caddy's own {"error":"..."} when it did not get that far.
type responseError struct {
	Status  int
	Code    string
	Message string
}

func (e *responseError) Error() string {
	switch {
	case e.Code != "":
		return fmt.Sprintf("%s (%s, HTTP %d)", e.Message, e.Code, e.Status)
	case e.Status == http.StatusNotFound:
		// Caddy itself answered: nothing is mounted under /apikey/.
		return fmt.Sprintf("%s (HTTP %d; is keygate's admin API (admin.api.apikey) served at this address?)", e.Message, e.Status)
	}
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
}

// parseResponseError builds an responseError from an error response.
func parseResponseError(status int, body []byte) *responseError {
	e := &responseError{Status: status}
	var envelope struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &envelope) == nil && len(envelope.Error) > 0 {
		var structured struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		var plain string
		switch {
		case json.Unmarshal(envelope.Error, &structured) == nil && (structured.Code != "" || structured.Message != ""):
			e.Code, e.Message = structured.Code, structured.Message
		case json.Unmarshal(envelope.Error, &plain) == nil:
			e.Message = plain
		}
	}
	if e.Message == "" {
		e.Message = strings.TrimSpace(string(body))
	}
	if e.Message == "" {
		e.Message = http.StatusText(status)
	}
	e.Message = clean(e.Message)
	return e
}

// do sends one request to the admin API. path is below the admin endpoint
// (e.g. "/apikey/keys"); in, when not nil, is sent as JSON. It returns the
// body of a 2xx response, an *responseError for a refusal, or an error saying
// the endpoint could not be reached.
func (c *adminClient) do(ctx context.Context, method, path string, query url.Values, in any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()

	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encoding request: %v", err)
		}
		body = bytes.NewReader(b)
	}
	u := c.origin + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("making request: %v", err)
	}
	if c.sendOrigin {
		req.Header.Set("Origin", c.origin)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")

	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, &unreachableError{addr: c.addr, err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("reading response from %s %s: %v", method, path, err)
	}
	if resp.StatusCode >= 400 {
		return nil, parseResponseError(resp.StatusCode, b)
	}
	if resp.StatusCode >= 300 {
		return nil, fmt.Errorf("unexpected HTTP %d from the admin endpoint", resp.StatusCode)
	}
	return b, nil
}

// unreachableError reports that no HTTP exchange with the admin endpoint
// took place.
type unreachableError struct {
	addr string
	err  error
}

func (e *unreachableError) Error() string {
	cause := e.err
	var uerr *url.Error
	if errors.As(cause, &uerr) {
		cause = uerr.Err
	}
	return fmt.Sprintf("cannot reach the admin endpoint at %s: %v (is keygate running? use --address or CADDY_ADMIN to point at its admin listener)", e.addr, cause)
}

func (e *unreachableError) Unwrap() error { return e.err }
