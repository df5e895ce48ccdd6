package console

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for _, c := range []struct {
		method, path string
		status       int
		contentType  string
		body         string
	}{
		{"GET", "/ui/", 200, "text/html; charset=utf-8", `<script type="module" src="js/main.js">`},
		{"HEAD", "/ui/", 200, "text/html; charset=utf-8", ""},
		{"GET", "/ui/js/main.js", 200, "text/javascript; charset=utf-8", "import {pages}"},
		{"GET", "/ui/js/pages/overview.js", 200, "text/javascript; charset=utf-8", "export async function render"},
		{"GET", "/ui/css/console.css", 200, "text/css; charset=utf-8", ":root"},
		{"GET", "/ui/favicon.svg", 200, "image/svg+xml", "<svg"},
		{"GET", "/ui/index.html", 200, "text/html; charset=utf-8", "<!doctype html>"},
		{"GET", "/ui/js/", 404, "", ""},
		{"GET", "/ui/nothing.js", 404, "", ""},
		{"GET", "/ui/../console.go", 404, "", ""},
		{"GET", "/ui//js/main.js", 404, "", ""},
		{"POST", "/ui/", 405, "", ""},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.status)
			continue
		}
		if got := resp.Header.Get("Content-Security-Policy"); got != ContentSecurityPolicy {
			t.Errorf("%s %s: CSP %q", c.method, c.path, got)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s %s: headers %v", c.method, c.path, resp.Header)
		}
		if c.status != 200 {
			continue
		}
		if got := resp.Header.Get("Content-Type"); got != c.contentType {
			t.Errorf("%s %s: Content-Type %q, want %q", c.method, c.path, got, c.contentType)
		}
		if !strings.Contains(string(b), c.body) {
			t.Errorf("%s %s: body lacks %q", c.method, c.path, c.body)
		}
	}
}

// TestNoInlineCode checks what the CSP would refuse anyway, so that a page never depends
// on it: no inline script or style, no event-handler attributes, no HTML strings.
func TestNoInlineCode(t *testing.T) {
	files, err := listAssets()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := assets.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		for _, bad := range []string{"<style", "style=", " onclick=", " onload=", "innerHTML", "outerHTML", "insertAdjacentHTML",
			"document.write", "eval(", "new Function", "setAttribute('style'", ".style."} {
			if strings.HasSuffix(f, ".css") && (bad == ".style." || bad == "style=") {
				continue
			}
			if strings.Contains(s, bad) {
				t.Errorf("%s contains %q", f, bad)
			}
		}
		if strings.HasSuffix(f, ".html") && strings.Count(s, "<script") != strings.Count(s, `<script type="module" src=`) {
			t.Errorf("%s has a script that is not an external module", f)
		}
	}
}

func listAssets() ([]string, error) {
	var out []string
	var walk func(dir string) error
	walk = func(dir string) error {
		entries, err := assets.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			p := dir + "/" + e.Name()
			if e.IsDir() {
				if err := walk(p); err != nil {
					return err
				}
				continue
			}
			out = append(out, p)
		}
		return nil
	}
	return out, walk("assets")
}
