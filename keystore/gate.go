package keystore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/keygate/keygate/keystore/graphql"
	"github.com/keygate/keygate/keystore/reqpath"
)

// Gate is the request policy of the apikey handlers, free of Caddy: given a
// plain description of a request it decides, in order, whether its path
// reads the same to keygate and to the backend, whether the client
// is blocked for sending too many invalid keys, whether the key is valid
// in this handler's environment, whether it may be used from the client's
// address, whether it holds the area and access level the request needs, whether
// its limits admit the request, and it counts the request when it is
// allowed (docs/design.md §1). The caller extracts the key, maps the
// verdict to a response and forwards the request.
//
// A Gate belongs to one config (its Areas and credentials); the
// Authenticator, Limiter, Meter and FailureLimiter it points at outlive
// config reloads and are shared.
type Gate struct {
	Auth    *Authenticator
	Areas   *Areas
	Limiter *Limiter
	Meter   *Meter
	// Failures limits invalid keys per client; nil: not limited.
	Failures *FailureLimiter
	// Credentials maps a run-as user to the backend's own credential,
	// boxed once for callers that store it as `any` per request.
	Credentials map[string]any
}

// Policy holds the options of one handler, judged with every request.
type Policy struct {
	// Admin makes the Gate judge an admin API call: the key must hold
	// keys:admin or keys:self; areas, limits and metering do not apply.
	Admin bool
	// RequireCredential refuses keys whose run-as user has no upstream
	// credential.
	RequireCredential bool
	// DefaultRate and DefaultQuota apply to keys without limits of their
	// own (this config's defaults: the Limiter outlives reloads).
	DefaultRate  *Rate
	DefaultQuota *Quota
	// Paths are the path characters the handler lets through knowingly
	// (step 0); zero: the strict default.
	Paths reqpath.Options
	// Environment is the handler's environment: it accepts only keys that
	// list it ("" accepts only keys that list none). Admin calls ignore it.
	Environment string
}

// Request is what the Gate needs to know of an HTTP request.
type Request struct {
	// Key is the API key found in the request; KeyFound reports whether
	// one was found at all, KeyAmbiguous whether distinct values were.
	Key          string
	KeyFound     bool
	KeyAmbiguous bool
	// Method is the request method; Overrides the method-override values
	// (headers and _method) judged in its place.
	Method    string
	Overrides []string
	// Path is the decoded request path, EscapedPath the same path as it
	// will be forwarded (Go's URL.EscapedPath).
	Path        string
	EscapedPath string
	// RawQuery, ContentType, ContentLength and Body are read only for a
	// GraphQL endpoint's path, whose document is judged.
	RawQuery      string
	ContentType   string
	ContentLength int64
	Body          io.Reader
	// Client is the client's IP address as Caddy determined it
	// (trusted_proxies honoured): for the failed-attempt limiter and the
	// key's allowed_ips.
	Client string
	// Now is the time of the request: one clock reading for every step.
	Now time.Time
}

// Outcome is the result of judging a request.
type Outcome uint8

// The outcomes, one per distinct answer.
const (
	Allowed          Outcome = iota
	InvalidKey               // 401: missing, malformed, unknown, revoked, expired, ambiguous
	TooManyFailures          // 429: the client sent too many invalid keys
	ForbiddenRead            // 403: no read access to the path
	ForbiddenWrite           // 403: no write access to the path
	NoCredential             // 403: the run-as user has no upstream credential
	NotAdmin                 // 403: an admin API call without keys:admin or keys:self
	RateLimited              // 429: the key's rate limit
	QuotaExceeded            // 429: the key's quota
	StoreUnavailable         // 503: the store failed and the key is not cached
	Canceled                 // 503: the client went away during the lookup
	InvalidRequest           // 400: a GraphQL request that cannot be judged
	MethodNotAllowed         // 405: a GraphQL mutation over GET
	TooLarge                 // 413: a GraphQL body over the endpoint's limit
	InvalidPath              // 400: a path the backend may read differently (step 0)
	ForbiddenAddress         // 403: the client address is outside the key's allowed_ips
	NumOutcomes      = iota  // the number of outcomes, for tables indexed by Outcome
)

var outcomeNames = [NumOutcomes]string{
	"allowed", "invalid_key", "too_many_failures", "forbidden_read", "forbidden_write",
	"no_credential", "not_admin", "rate_limited", "quota_exceeded", "store_unavailable", "canceled",
	"invalid_request", "method_not_allowed", "too_large", "invalid_path", "forbidden_address",
}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Verdict is the Gate's answer for one request.
type Verdict struct {
	Outcome Outcome
	// Principal is the authenticated key (nil before step 4 passed).
	Principal *Principal
	// Area is the area the path matched (empty when none did).
	Area string
	// Limit is the limits decision of an allowed request: when
	// Limit.Limited, the RateLimit-* headers are due.
	Limit Decision
	// RetryAfter is set for the 429 outcomes.
	RetryAfter time.Duration
	// Credential is the run-as user's upstream credential, if any.
	Credential any
	// Err is the cause of StoreUnavailable, for the log (never for the
	// client).
	Err error
	// Message, when set, says what is wrong with a GraphQL request, for
	// the client (it never quotes the document).
	Message string
	// Body holds the bytes read from a GraphQL request's body: the caller
	// forwards exactly these.
	Body []byte
	// BodyRead reports whether the Gate read the request body.
	BodyRead bool
	// Usage counts the parts of an allowed request's usage: the Gate
	// counts its areas, the caller the class of its answer (Usage.Status).
	Usage Tally
	// graphQLNeeds are the areas a GraphQL document touched, one each.
	graphQLNeeds []graphql.Need
	// Path and EscapedPath are the canonical path that was judged: the
	// caller forwards exactly this path when PathChanged.
	Path, EscapedPath string
	PathChanged       bool
}

// Judge runs the policy on one request. It does not allocate on a cache hit.
func (g *Gate) Judge(ctx context.Context, req *Request, pol *Policy) Verdict {
	// Step 0, before anything else: no key lookup, no failed attempt.
	var canonPath, canonEscaped string
	if !pol.Admin {
		var err error
		canonEscaped, canonPath, err = reqpath.Canonical(req.EscapedPath, req.Path, pol.Paths)
		if err != nil {
			return Verdict{Outcome: InvalidPath, Message: err.Error()}
		}
	}
	if g.Failures != nil {
		if blocked, retry := g.Failures.Blocked(req.Client, req.Now); blocked {
			return Verdict{Outcome: TooManyFailures, RetryAfter: retry}
		}
	}
	if !req.KeyFound || req.KeyAmbiguous || !PlausibleKey(req.Key) {
		return g.invalid(req)
	}
	p, err := g.Auth.AuthenticateAt(ctx, req.Key, req.Now)
	switch {
	case err == nil:
	case errors.Is(err, ErrInvalidKey):
		return g.invalid(req)
	case errors.Is(err, context.Canceled):
		return Verdict{Outcome: Canceled}
	default:
		return Verdict{Outcome: StoreUnavailable, Err: err}
	}
	// A key of another environment is answered like an unknown one:
	// nothing tells that it exists elsewhere.
	if !pol.Admin && !p.AcceptedIn(pol.Environment) {
		return g.invalid(req)
	}
	if !p.AllowsClient(req.Client) {
		return Verdict{Outcome: ForbiddenAddress, Principal: p}
	}
	if pol.Admin {
		if !p.profile.rights.Admin && !p.profile.rights.Self {
			return Verdict{Outcome: NotAdmin, Principal: p}
		}
		return Verdict{Outcome: Allowed, Principal: p}
	}
	clean := CleanPath(canonPath)
	var v Verdict
	if ep := g.Areas.GraphQL(clean); ep != nil {
		v = judgeGraphQL(req, p, ep)
	} else {
		v = g.judgePath(req, p, clean)
	}
	if v.Outcome != Allowed {
		return v
	}
	cred, hasCred := g.Credentials[p.User()]
	if pol.RequireCredential && !hasCred {
		v.Outcome = NoCredential
		return v
	}
	d := g.Limiter.AdmitPrincipal(p, req.Now, pol.DefaultRate, pol.DefaultQuota)
	if !d.Allowed {
		v.Outcome, v.RetryAfter = RateLimited, d.RetryAfter
		if d.Code == CodeQuotaExceeded {
			v.Outcome = QuotaExceeded
		}
		return v
	}
	v.Usage = g.Meter.CountKey(p, req.Now)
	if v.graphQLNeeds != nil {
		for _, n := range v.graphQLNeeds {
			v.Usage.Area(n.Area)
		}
	} else {
		v.Usage.Area(v.Area)
	}
	// Counted for every request, so a user quota set in mid-period sees
	// the period's usage so far.
	g.Meter.CountUser(p, req.Now)
	v.Limit, v.Credential = d, cred
	v.Path, v.EscapedPath = canonPath, canonEscaped
	v.PathChanged = canonEscaped != req.EscapedPath
	return v
}

// judgePath is step 5 for a REST request: the cleaned path must lie in an
// area the key holds at the level the method needs.
func (g *Gate) judgePath(req *Request, p *Principal, clean string) Verdict {
	need := RequiredLevel(req.Method, req.Overrides...)
	area, ok := g.Areas.Allowed(p.profile.rights, clean, need)
	if !ok {
		v := Verdict{Outcome: ForbiddenRead, Principal: p, Area: area}
		if need == LevelWrite || g.Areas.WriteOnly(area) {
			v.Outcome = ForbiddenWrite
		}
		return v
	}
	return Verdict{Outcome: Allowed, Principal: p, Area: area}
}

// judgeGraphQL is step 5 for a GraphQL endpoint: every root field of every
// operation in the document must lie in an area the key holds, read for
// queries and subscriptions, write for mutations. The body is read here
// (bounded), after the key was found valid, so no unauthenticated request
// makes keygate parse anything.
func judgeGraphQL(req *Request, p *Principal, ep *GraphQLEndpoint) Verdict {
	j, body, err := ep.Judge(graphql.Request{
		Method: req.Method, ContentType: req.ContentType, RawQuery: req.RawQuery,
		Body: req.Body, ContentLength: req.ContentLength,
	}, ep.MaxBody)
	v := Verdict{Principal: p, Body: body, BodyRead: true}
	if err != nil {
		switch {
		case errors.Is(err, graphql.ErrTooLarge):
			v.Outcome = TooLarge
		case errors.Is(err, graphql.ErrInvalid):
			v.Outcome = InvalidRequest
		case errors.Is(err, graphql.ErrMutationOverGET):
			v.Outcome = MethodNotAllowed
		case errors.Is(err, graphql.ErrUnknownField):
			v.Outcome = ForbiddenRead
		default: // the client's body failed to arrive
			v.Outcome, err = InvalidRequest, errors.New("the request body could not be read")
		}
		v.Message = err.Error()
		return v
	}
	for _, n := range j.Needs {
		need := LevelRead
		if n.Write {
			need = LevelWrite
		}
		if p.profile.rights.Level(n.Area) < need {
			v.Outcome, v.Area = ForbiddenRead, n.Area
			if n.Write {
				v.Outcome = ForbiddenWrite
			}
			v.Message = fmt.Sprintf("this API key has no %s access to the GraphQL area %q", need, n.Area)
			return v
		}
		if v.Area == "" {
			v.Area = n.Area
		}
	}
	if j.Introspection && !readsAny(p.profile.rights, ep.Areas()) {
		v.Outcome = ForbiddenRead
		v.Message = "introspection needs read access to an area of this GraphQL endpoint"
		return v
	}
	v.Outcome, v.graphQLNeeds = Allowed, j.Needs
	return v
}

func readsAny(r *Rights, areas []string) bool {
	for _, a := range areas {
		if r.Level(a) >= LevelRead {
			return true
		}
	}
	return false
}

// invalid refuses a key and records the failure against the client.
func (g *Gate) invalid(req *Request) Verdict {
	if g.Failures != nil {
		g.Failures.Fail(req.Client, req.Now)
	}
	return Verdict{Outcome: InvalidKey}
}
