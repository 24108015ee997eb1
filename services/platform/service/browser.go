package service

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/vanguard/vanguardgrpc"
)

// The browser API: every gRPC service registered on the service's server is
// also served on its HTTP port in the Connect and gRPC-Web protocols (the
// connectrpc vanguard transcoder), at the gRPC path
// /churnwatch.v1.AlertService/ListAlerts and so on. Vanguard turns each
// request into a gRPC call on the SAME *grpc.Server (grpc.Server.ServeHTTP),
// so the auth and access-table interceptors, the message-size limit and the
// tracing stats handler apply unchanged: there is no second backend.
//
// Why vanguard and not grpc-gateway: it needs no HTTP annotations in the
// .proto files and no generated gateway code, and it carries server
// streaming (Subscribe) over HTTP/1.1 in the Connect protocol, which a
// browser's fetch can read; grpc-gateway's streaming is newline-delimited
// JSON outside any protocol a typed client generator knows.

// mountBrowserAPI registers the transcoder for every service on the gRPC
// server. Called by Run, after the service registered its handlers.
func (b *Base) mountBrowserAPI() error {
	t, err := vanguardgrpc.NewTranscoder(b.GRPC)
	if err != nil {
		return fmt.Errorf("browser api: %w", err)
	}
	h := longLivedStreams(t)
	for name := range b.GRPC.GetServiceInfo() {
		b.Mux.Handle("POST /"+name+"/", h)
	}
	return nil
}

// IsStreamingRPC reports whether an HTTP request is a Connect streaming call
// or a gRPC-Web call (which may stream): its answer can outlive the
// server's read and write timeouts.
func IsStreamingRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "application/connect+") || strings.HasPrefix(ct, "application/grpc-web")
}

// longLivedStreams lifts the HTTP server's read and write deadlines for
// streaming calls: a Subscribe stream stays open for hours, and on HTTP/1.1
// an expired read deadline would cancel the request's context. Unary calls
// keep the deadlines. The stream's lifetime is bounded by the alerts
// service itself (token expiry re-checked, slow readers cut off).
func longLivedStreams(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if IsStreamingRPC(r) {
			rc := http.NewResponseController(w)
			_ = rc.SetReadDeadline(time.Time{})
			_ = rc.SetWriteDeadline(time.Time{})
		}
		next.ServeHTTP(w, r)
	})
}
