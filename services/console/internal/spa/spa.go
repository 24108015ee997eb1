// Package spa serves the console's single-page app from its built bundle:
// index.html for the app's own routes (/, /alerts/{id}, /kpis …), the
// content-hashed files under /assets/ cached for a year, every answer with
// a strict Content-Security-Policy.
package spa

import (
	"bytes"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// CSP allows only the console's own scripts, styles, images and API calls;
// no inline script, no framing (clickjacking), no plugins, no <base>.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// SecurityHeaders sets the headers every console answer carries; hsts adds
// Strict-Transport-Security (when served over TLS).
func SecurityHeaders(h http.Header, hsts bool) {
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if hsts {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
}

// Handler serves the bundle in dist (index.html at its root).
type Handler struct {
	dist  fs.FS
	index []byte
	mod   time.Time
}

// New checks that the bundle has an index.html.
func New(dist fs.FS) (*Handler, error) {
	index, err := fs.ReadFile(dist, "index.html")
	if err != nil {
		return nil, err
	}
	return &Handler{dist: dist, index: index, mod: time.Now()}, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
	if name != "" && name != "index.html" {
		if f, err := fs.Stat(h.dist, name); err == nil && !f.IsDir() {
			if strings.HasPrefix(name, "assets/") {
				// Vite names these by content hash: a new build, a new name.
				w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
			} else {
				w.Header().Set("Cache-Control", "no-cache")
			}
			http.ServeFileFS(w, r, h.dist, name)
			return
		}
		if strings.HasPrefix(name, "assets/") || path.Ext(name) != "" {
			http.NotFound(w, r) // a missing file, not an app route
			return
		}
	}
	// An app route: the app reads the path and renders the page.
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	http.ServeContent(w, r, "index.html", h.mod, bytes.NewReader(h.index))
}
