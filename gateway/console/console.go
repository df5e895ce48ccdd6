// Package console is Fanout's web console: the pages under /ui/ on the admin port, embedded
// in the binary, and the sampler that keeps the last hour of rates for its Overview. The
// pages are plain JavaScript modules, HTML and CSS with no build step; they read and act
// through the admin API only, with the admin token the operator types in. This package
// serves files and samples a Prometheus registry: it imports no Gin, NATS or gateway, and
// it is mounted by httpapi.
package console

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed assets
var assets embed.FS

// Prefix is where the console is mounted on the admin port.
const Prefix = "/ui/"

// ContentSecurityPolicy is sent with every file of the console: scripts, styles and
// requests only from the admin port itself, no inline script or style, no frames, no forms
// posted anywhere, and DOM writes only through APIs that cannot inject markup (Trusted
// Types, where the browser has them).
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; " +
	"frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'"

// Handler serves the console under Prefix: index.html for the folder itself, the files
// of assets/ below it, 404 for anything else (no listings). Only GET and HEAD.
func Handler() http.Handler {
	root, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded folder is part of the binary
	}
	files := http.FileServerFS(root)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Cache-Control", "no-cache")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name, ok := strings.CutPrefix(r.URL.Path, Prefix)
		if !ok {
			http.NotFound(w, r)
			return
		}
		if name == "" {
			name = "index.html"
		}
		clean := path.Clean(name)
		if clean != name || strings.HasSuffix(name, "/") || !fs.ValidPath(clean) {
			http.NotFound(w, r)
			return
		}
		if st, err := fs.Stat(root, clean); err != nil || st.IsDir() {
			http.NotFound(w, r)
			return
		}
		if clean == "index.html" {
			// FileServer redirects /index.html to ./; serve the file's content itself.
			b, _ := fs.ReadFile(root, clean)
			h.Set("Content-Type", "text/html; charset=utf-8")
			w.Write(b)
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + clean
		r2.URL.RawPath = ""
		files.ServeHTTP(w, r2)
	})
}
