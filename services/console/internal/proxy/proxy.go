// Package proxy owns the console's /rpc/ path: the browser's Connect and
// gRPC-Web calls forwarded to the service that serves them (each service's
// HTTP port speaks both, see platform/service), with the browser's cookies
// removed and the signed-in user's bearer token added. The browser never
// holds the token (the backend-for-frontend pattern).
package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"
)

// Prefix is where the browser API is mounted on the console.
const Prefix = "/rpc/"

// Route sends the calls of one gRPC service (full name, e.g.
// churnwatch.v1.AlertService) to a service's HTTP base URL.
type Route struct {
	Service  string
	Upstream *url.URL
}

// TokenFunc returns the bearer token of the request's session, or an error
// when the request is not signed in (the caller answers 401). It may set a
// renewed session cookie on w.
type TokenFunc func(w http.ResponseWriter, r *http.Request) (string, error)

// Handler forwards /rpc/<service>/<method>.
type Handler struct {
	routes  map[string]*httputil.ReverseProxy
	token   TokenFunc
	origins []string
	log     *slog.Logger
}

// New builds the proxy over one transport (TLS to the services, when
// configured) for the routes. origins are the console's public origins
// (https://console.bank.example) accepted in an Origin header besides the
// host the request was sent to (behind a TLS-terminating load balancer the
// two differ in scheme).
func New(routes []Route, transport http.RoundTripper, token TokenFunc, origins []string, log *slog.Logger) (*Handler, error) {
	h := &Handler{routes: map[string]*httputil.ReverseProxy{}, token: token, origins: origins, log: log}
	for _, rt := range routes {
		if rt.Upstream == nil || rt.Upstream.Host == "" {
			return nil, fmt.Errorf("route %s: no upstream URL", rt.Service)
		}
		up := rt.Upstream
		name := rt.Service
		h.routes[name] = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(up)
				pr.Out.Host = up.Host
				// The service sees the gRPC path: /churnwatch.v1.AlertService/ListAlerts.
				pr.Out.URL.Path = strings.TrimSuffix(up.Path, "/") + strings.TrimPrefix(pr.In.URL.Path, "/rpc")
				pr.Out.URL.RawPath = ""
				pr.Out.Header.Del("Cookie")
				pr.Out.Header.Set("Authorization", "Bearer "+pr.In.Context().Value(tokenKey{}).(string))
				pr.SetXForwarded()
			},
			Transport: transport,
			// -1: flush every write at once, so that a Subscribe stream's
			// messages reach the browser as they come.
			FlushInterval: -1,
			ModifyResponse: func(resp *http.Response) error {
				resp.Header.Del("Set-Cookie")
				return nil
			},
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				log.WarnContext(r.Context(), "upstream call failed", "service", name, "err", err)
				if r.Context().Err() != nil {
					return // the browser went away
				}
				writeConnectError(w, http.StatusServiceUnavailable, "unavailable",
					fmt.Sprintf("the %s service cannot be reached; try again in a moment (operators: check the console's upstream URL and the service's health)", shortName(name)))
			},
		}
	}
	return h, nil
}

func shortName(service string) string {
	if i := strings.LastIndexByte(service, '.'); i >= 0 {
		return service[i+1:]
	}
	return service
}

// ServeHTTP checks the request (method, CSRF, session) and forwards it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, Prefix)
	service, method, ok := strings.Cut(rest, "/")
	if !ok || method == "" || strings.Contains(method, "/") {
		writeConnectError(w, http.StatusNotFound, "unimplemented", "no such RPC: want /rpc/<package.Service>/<Method>")
		return
	}
	rp := h.routes[service]
	if rp == nil {
		writeConnectError(w, http.StatusNotFound, "unimplemented", fmt.Sprintf("service %q is not served through the console", service))
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeConnectError(w, http.StatusMethodNotAllowed, "unimplemented", "RPCs are POST requests")
		return
	}
	if reason := CrossSite(r, h.origins); reason != "" {
		h.log.WarnContext(r.Context(), "rpc refused: possible cross-site request", "service", service, "method", method, "reason", reason)
		writeConnectError(w, http.StatusForbidden, "permission_denied", "request refused: "+reason)
		return
	}
	tok, err := h.token(w, r)
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(map[string]string{"code": "unauthenticated", "message": "signed out: " + err.Error(), "error": "signed out", "login": "/login"})
		return
	}
	if IsStreaming(r) {
		// A Subscribe stream outlives the server's read and write timeouts;
		// its lifetime is bounded by the service (token expiry re-checked).
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Time{})
		_ = rc.EnableFullDuplex() // HTTP/1.1: the body stays readable after the head
		// Pass the head on at once (ReverseProxy would hold it until the
		// first message): the browser's fetch resolves on it.
		w = flushHead{w}
	}
	rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tokenKey{}, tok)))
}

// tokenKey carries the session's token from ServeHTTP to Rewrite.
type tokenKey struct{}

// IsStreaming reports a Connect streaming call or a gRPC-Web call.
func IsStreaming(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "application/connect+") || strings.HasPrefix(ct, "application/grpc-web")
}

// CrossSite returns why a request may come from another site, or "". A
// browser lets any page POST a form or a "simple" fetch cross-site with the
// user's cookies; it never lets one set a Connect-Protocol-Version header
// or a gRPC-Web content type without a CORS preflight, which the console
// never grants. A present Origin must also be the console's own.
func CrossSite(r *http.Request, origins []string) string {
	ct := r.Header.Get("Content-Type")
	if r.Header.Get("Connect-Protocol-Version") != "1" && !strings.HasPrefix(ct, "application/grpc-web") {
		return "missing the Connect-Protocol-Version: 1 header (or a gRPC-Web content type)"
	}
	if o := r.Header.Get("Origin"); o != "" && !SameOrigin(r, o, origins) {
		return "Origin " + o + " is not this console"
	}
	return ""
}

// SameOrigin reports whether origin names the host the request was sent to
// or one of the configured public origins.
func SameOrigin(r *http.Request, origin string, origins []string) bool {
	for _, o := range origins {
		if strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return strings.EqualFold(u.Host, r.Host) && u.Scheme == scheme
}

// writeConnectError answers in the Connect protocol's error shape, which
// the browser's Connect client turns into a ConnectError with that code.
func writeConnectError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": code, "message": msg})
}

// flushHead flushes the response head as soon as it is written.
type flushHead struct{ http.ResponseWriter }

func (f flushHead) WriteHeader(code int) {
	f.ResponseWriter.WriteHeader(code)
	_ = http.NewResponseController(f.ResponseWriter).Flush()
}

func (f flushHead) Flush()                      { _ = http.NewResponseController(f.ResponseWriter).Flush() }
func (f flushHead) Unwrap() http.ResponseWriter { return f.ResponseWriter }
