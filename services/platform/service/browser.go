package service

import (
	"bytes"
	"fmt"
	"io"
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
	serverStreams := map[string]bool{}
	for name, info := range b.GRPC.GetServiceInfo() {
		for _, m := range info.Methods {
			if m.IsServerStream && !m.IsClientStream {
				serverStreams["/"+name+"/"+m.Name] = true
			}
		}
	}
	h := longLivedStreams(t, serverStreams, int64(b.Cfg.Limits.GRPCMaxMessage))
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
func longLivedStreams(next http.Handler, serverStreams map[string]bool, maxMessage int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if IsStreamingRPC(r) {
			rc := http.NewResponseController(w)
			_ = rc.SetReadDeadline(time.Time{})
			_ = rc.SetWriteDeadline(time.Time{})
			ct := r.Header.Get("Content-Type")
			if serverStreams[r.URL.Path] && strings.HasPrefix(ct, "application/connect+") && identity(r.Header.Get("Connect-Content-Encoding")) {
				// The request of a server stream is one message: read it
				// before answering the head. (A client that sees the head
				// first may stop sending the body: Go's HTTP/2 transport
				// does, so the console's proxy would.)
				body, err := io.ReadAll(io.LimitReader(r.Body, maxMessage+6))
				if err != nil {
					http.Error(w, "reading the request: "+err.Error(), http.StatusBadRequest)
					return
				}
				r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
				w = sendHeadNow(w, ct)
			}
		}
		next.ServeHTTP(w, r)
	})
}

func identity(enc string) bool { return enc == "" || enc == "identity" }

// sendHeadNow answers a Connect streaming call's head at once: 200 and the
// request's content type, which is what the Connect protocol answers for
// every streaming call, errors included (they travel in the end-of-stream
// message). Vanguard holds the head back until the first message, and a
// browser's fetch resolves only on the head, so a Subscribe with nothing to
// replay would look hung until the first alert. What vanguard writes to the
// head later is dropped (only for uncompressed calls: the head would
// otherwise have to name the compression).
func sendHeadNow(w http.ResponseWriter, contentType string) http.ResponseWriter {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()
	return &headSent{ResponseWriter: w, late: http.Header{}}
}

type headSent struct {
	http.ResponseWriter
	late http.Header
}

func (h *headSent) Header() http.Header         { return h.late }
func (h *headSent) WriteHeader(int)             {}
func (h *headSent) Flush()                      { _ = http.NewResponseController(h.ResponseWriter).Flush() }
func (h *headSent) Unwrap() http.ResponseWriter { return h.ResponseWriter }
