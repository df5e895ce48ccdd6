package config

import (
	"cmp"
	"net/netip"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// Server is the callback receiver.
type Server struct {
	Listen         string
	Path           string
	MaxBodyBytes   int64
	TrustedProxies []netip.Prefix
	TLS            TLSFiles
}

// TLSFiles names a certificate and key (and, for clients, a CA) as PEM files.
type TLSFiles struct {
	Cert, Key, CA string
}

// MaxBodyEmbedded is the largest server.max_body_bytes with the embedded queue. Each
// destination's copy of a callback is one message of its JetStream server, the body whole
// (and in base64 once dead-lettered): 4 MiB leaves room to spare in the 8 MiB the embedded
// server takes (gateway's tests store such a body as a job and as a dead letter). Tencent
// IM's callbacks are far smaller; the default is 1 MiB.
const MaxBodyEmbedded = 4 << 20

func (s *Server) decode(d *decoder, n *yaml.Node, p string, pos *nodes) {
	var pathNode, tlsNode *yaml.Node
	tlsOK := true // no problem with the files themselves, so checking the pair makes sense
	d.mapping(n, p, map[string]field{
		"listen":          d.setListen(&s.Listen),
		"path":            func(v *yaml.Node, p string) { pathNode = v; d.setStr(&s.Path)(v, p) },
		"max_body_bytes":  func(v *yaml.Node, p string) { pos.maxBody = v; d.setSize(&s.MaxBodyBytes)(v, p) },
		"trusted_proxies": d.setPrefixes(&s.TrustedProxies),
		"tls": func(v *yaml.Node, p string) {
			tlsNode = v
			before := len(d.probs)
			d.tlsFiles(&s.TLS, false)(v, p)
			tlsOK = len(d.probs) == before
		},
	})
	if !strings.HasPrefix(s.Path, "/") {
		d.errorf(cmp.Or(pathNode, n), join(p, "path"), "must start with /, got %q", s.Path)
	}
	if tlsOK && (s.TLS.Cert == "") != (s.TLS.Key == "") {
		d.errorf(cmp.Or(tlsNode, n), join(p, "tls"), "cert and key must be set together")
	}
}

// checkBody refuses a body limit the embedded queue cannot store; an external JetStream's
// max_payload is known only once connected, and the gateway checks it then.
func (s *Server) checkBody(d *decoder, q Queue, pos *nodes) {
	if q.Embedded() && s.MaxBodyBytes > MaxBodyEmbedded {
		d.errorf(pos.maxBody, "server.max_body_bytes", "%d bytes is more than the embedded queue stores in one message: at most %d (4MiB)",
			s.MaxBodyBytes, MaxBodyEmbedded)
	}
}

// restartOnly names the keys of s that differ from old and take effect only on restart.
func (s Server) restartOnly(old Server) []string {
	var keys []string
	if s.Listen != old.Listen {
		keys = append(keys, "server.listen")
	}
	if s.TLS != old.TLS {
		keys = append(keys, "server.tls")
	}
	return keys
}

// Admin is the admin port: health, metrics, reload and the API.
type Admin struct {
	Listen   string
	Token    Secret
	Insecure bool
}

func (a *Admin) decode(d *decoder, n *yaml.Node, p string, pos *nodes) {
	d.mapping(n, p, map[string]field{
		"listen":   func(v *yaml.Node, p string) { pos.adminListen = v; d.setListen(&a.Listen)(v, p) },
		"token":    d.setSecret(&a.Token),
		"insecure": d.setBool(&a.Insecure),
	})
}

// check refuses an admin port open beyond the machine without a token, unless insecure
// says it is meant.
func (a *Admin) check(d *decoder, pos *nodes) {
	if !a.Insecure && a.Token == "" && !loopback(a.Listen) {
		d.errorf(pos.adminListen, "admin.listen", "%s is not a loopback address and admin.token is empty: set a token, or insecure: true", a.Listen)
	}
}

func (a Admin) restartOnly(old Admin) []string {
	if a.Listen != old.Listen {
		return []string{"admin.listen"}
	}
	return nil
}

func loopback(listen string) bool {
	host := listen
	if i := strings.LastIndex(listen, ":"); i >= 0 {
		host = strings.Trim(listen[:i], "[]")
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func (d *decoder) tlsFiles(dst *TLSFiles, withCA bool) field {
	return func(n *yaml.Node, p string) {
		f := map[string]field{"cert": d.setFile(&dst.Cert), "key": d.setFile(&dst.Key)}
		if withCA {
			f["ca"] = d.setFile(&dst.CA)
		}
		d.mapping(n, p, f)
	}
}

// setFile accepts a path to a readable file.
func (d *decoder) setFile(dst *string) field {
	return func(n *yaml.Node, p string) {
		s, ok := d.str(n, p)
		if !ok || s == "" {
			return
		}
		if _, err := os.Stat(s); err != nil {
			d.errorf(n, p, "cannot read %s: %v", s, err)
			return
		}
		*dst = s
	}
}
