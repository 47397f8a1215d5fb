package caddymodule

import (
	"errors"
	"io"
	"net/http"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// statusRecorder notes the status of the answer to an admitted request, for
// the usage breakdown by answer class. Recorders are pooled so the hit path
// does not allocate one per request.
type statusRecorder struct {
	caddyhttp.ResponseWriterWrapper
	status int // the final status written; 0 until one is
}

var statusRecorders = sync.Pool{New: func() any { return new(statusRecorder) }}

func (r *statusRecorder) WriteHeader(code int) {
	// Informational answers (100 Continue, 103 Early Hints) come before
	// the real one; 101 Switching Protocols is the last the proxy writes.
	if r.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// ReadFrom keeps the wrapper's sendfile path but notes the implied 200.
func (r *statusRecorder) ReadFrom(src io.Reader) (int64, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriterWrapper.ReadFrom(src)
}

// serveRecorded runs next with w wrapped in a pooled statusRecorder and
// returns next's error and the status of the answer the client gets: the
// one written, else the error's (Caddy writes it), else 200.
func serveRecorded(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) (int, error) {
	rec := statusRecorders.Get().(*statusRecorder)
	rec.ResponseWriter, rec.status = w, 0
	err := next.ServeHTTP(rec, r)
	status := rec.status
	rec.ResponseWriter = nil
	statusRecorders.Put(rec)
	if status == 0 {
		status = http.StatusOK
		if err != nil {
			status = http.StatusInternalServerError
			var he caddyhttp.HandlerError
			if errors.As(err, &he) && he.StatusCode != 0 {
				status = he.StatusCode
			}
		}
	}
	return status, err
}
