package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nkeys"
	"gopkg.in/yaml.v3"

	"github.com/fanout-gw/fanout/gateway/config"
	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// TestClusterQueueOptions checks that every queue key of the config reaches the queue:
// several servers, credentials, TLS files and replicas for an external cluster.
func TestClusterQueueOptions(t *testing.T) {
	dir := t.TempDir()
	file := func(name string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	creds, ca, cert, key := file("nats.creds"), file("ca.pem"), file("client.pem"), file("client-key.pem")
	for _, tt := range []struct {
		name, queue string
		want        queue.Options
	}{{
		name: "external cluster",
		queue: fmt.Sprintf(`  url: "nats://n1:4222, tls://fanout:s3cret@n2:4222,nats://n3:4222"
  credentials: %s
  tls: {ca: %s, cert: %s, key: %s}
  replicas: 3
  dedup_window: 5m
  dead_letter_max_age: 24h
`, creds, ca, cert, key),
		want: queue.Options{URL: "nats://n1:4222, tls://fanout:s3cret@n2:4222,nats://n3:4222", Credentials: creds,
			TLS: queue.TLS{CA: ca, Cert: cert, Key: key}, Replicas: 3, SyncInterval: time.Second,
			DedupWindow: queueDedupWindow, DeadLetterMaxAge: 24 * time.Hour},
	}, {
		name:  "embedded",
		queue: "  dir: /var/lib/fanout\n  sync: always\n",
		want: queue.Options{Dir: "/var/lib/fanout", Replicas: 1, SyncAlways: true, SyncInterval: time.Second,
			DeadLetterMaxAge: 336 * time.Hour},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			text := "tencent: {apps: [{sdkappid: " + fanouttest.App + "}]}\nqueue:\n" + tt.queue
			cfg, probs := config.Parse("fanout.yaml", []byte(text), func(string) (string, bool) { return "", false })
			if cfg == nil || len(probs) > 0 {
				t.Fatalf("config problems:\n%v", probs)
			}
			got := queueOptions(cfg.Queue, nil)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("queueOptions =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// TestClusterSecureQueue runs a gateway on a nats-server that requires TLS with a client
// certificate and a user of an operator (a .creds file), with queue.url listing a server
// that is down before the one that is up: callbacks are stored and delivered through it.
// Without the credentials, or without the client certificate, the queue cannot open.
func TestClusterSecureQueue(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a nats-server process")
	}
	dir := t.TempDir()
	ca, caKey := clCertificate(t, dir, "ca", nil, nil)
	clCertificate(t, dir, "server", ca, caKey)
	clCertificate(t, dir, "client", ca, caKey)
	operator, account, creds := clOperator(t, dir)

	// The address, the JetStream store and the name come from NATSServer's command line.
	conf := filepath.Join(dir, "nats-server.conf")
	srv := fanouttest.NewNATSServer(t, "secure", "-c", conf)
	err := os.WriteFile(conf, fmt.Appendf(nil, `tls {
  cert_file: %q
  key_file: %q
  ca_file: %q
  verify: true
}
operator: %q
system_account: %s
resolver: MEMORY
resolver_preload: {
  %s
}
`, filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"),
		filepath.Join(dir, "ca.pem"), operator, account.system, account.preload), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start(t)

	sink := fanouttest.NewReceiver(t, nil)
	path := fanouttest.WriteConfig(t, fmt.Sprintf(`server: {listen: "127.0.0.1:0", path: /callback}
admin: {listen: "127.0.0.1:0"}
tencent:
  apps: [{sdkappid: %s}]
queue:
  url: "nats://127.0.0.1:%d, tls://127.0.0.1:%d"
  credentials: %s
  tls: {ca: %s, cert: %s, key: %s}
  replicas: 1
destinations:
  sink: {url: %q}
routes:
  - {name: all, to: [sink]}
`, fanouttest.App, fanouttest.FreePort(t), srv.Port, creds, filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"),
		filepath.Join(dir, "client-key.pem"), sink.URL()))
	g := startGateway(t, path)
	acceptMessage(t, g, "secure-1")
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the delivery", func() bool { return sink.Delivered()["secure-1"] == 1 })
	if s := send(t, http.MethodGet, "http://"+g.AdminAddr()+"/readyz", nil, nil).Status; s != http.StatusOK {
		t.Errorf("/readyz: %d, want 200", s)
	}

	// Each of the two is needed.
	opts := queueOptions(g.live.Load().cfg.Queue, slog.New(slog.DiscardHandler))
	opts.URL = "tls://" + srv.Addr()
	noCreds, noCert := opts, opts
	noCreds.Credentials = ""
	noCert.TLS.Cert, noCert.TLS.Key = "", ""
	for name, o := range map[string]queue.Options{"without credentials": noCreds, "without a client certificate": noCert} {
		ctx, cancel := context.WithTimeout(context.Background(), fanouttest.WaitTimeout)
		q, err := queue.Open(ctx, o)
		cancel()
		if err == nil {
			q.Close()
			t.Errorf("queue.Open %s succeeded, want an error", name)
			continue
		}
		if name == "without credentials" && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("queue.Open %s: %v, want an authorization error", name, err)
		}
		t.Logf("queue.Open %s: %v", name, err)
	}
}

// clAccounts are the accounts of clOperator, for the server config.
type clAccounts struct {
	system  string // the system account's public key
	preload string // resolver_preload entries: public key: JWT
}

// clOperator makes an operator, a system account, an account with JetStream and a user of
// it; it returns the operator JWT, the accounts and the path of the user's .creds file.
func clOperator(t testing.TB, dir string) (string, clAccounts, string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	okp, err := nkeys.CreateOperator()
	must(err)
	opub, err := okp.PublicKey()
	must(err)
	ojwt, err := jwt.NewOperatorClaims(opub).Encode(okp)
	must(err)

	var accounts clAccounts
	account := func(name string, js bool) nkeys.KeyPair {
		akp, err := nkeys.CreateAccount()
		must(err)
		apub, err := akp.PublicKey()
		must(err)
		claims := jwt.NewAccountClaims(apub)
		claims.Name = name
		if js {
			claims.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		ajwt, err := claims.Encode(okp)
		must(err)
		accounts.preload += apub + ": " + ajwt + "\n  "
		if name == "SYS" {
			accounts.system = apub
		}
		return akp
	}
	account("SYS", false)
	akp := account("FANOUT", true)

	ukp, err := nkeys.CreateUser()
	must(err)
	upub, err := ukp.PublicKey()
	must(err)
	useed, err := ukp.Seed()
	must(err)
	ujwt, err := jwt.NewUserClaims(upub).Encode(akp)
	must(err)
	creds, err := jwt.FormatUserConfig(ujwt, useed)
	must(err)
	path := filepath.Join(dir, "fanout.creds")
	must(os.WriteFile(path, creds, 0o600))
	return ojwt, accounts, path
}

// clCertificate writes name.pem and name-key.pem in dir: a CA when parent is nil, else a
// certificate for 127.0.0.1 (server and client use) signed by parent.
func clCertificate(t testing.TB, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "fanout test " + name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
		parent, parentKey = tmpl, key
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for file, block := range map[string]*pem.Block{
		name + ".pem":     {Type: "CERTIFICATE", Bytes: der},
		name + "-key.pem": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// clExampleDir is examples/cluster, seen from gateway/.
const clExampleDir = "../examples/cluster"

// TestClusterExample checks that the pieces of examples/cluster fit together: the three
// nats-server configs are valid (nats-server -t) and form one cluster with JetStream, and
// config.yaml loads with the environment that compose.yaml and the Kubernetes Deployment
// give it, listing the three nodes with replicas 3, the admin port where the probes look.
// (cmd/fanout's TestExamples checks it with an empty environment and routes its payloads.)
func TestClusterExample(t *testing.T) {
	t.Run("nats", func(t *testing.T) {
		bin := fanouttest.NATSServerBinary(t)
		names := []string{"nats-1", "nats-2", "nats-3"}
		for _, name := range names {
			path := filepath.Join(clExampleDir, "nats", name+".conf")
			if out, err := exec.Command(bin, "-t", "-c", path).CombinedOutput(); err != nil {
				t.Errorf("nats-server -t -c %s: %v\n%s", path, err, out)
				continue
			}
			c, err := conf.ParseFile(path)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			js, _ := c["jetstream"].(map[string]any)
			cluster, _ := c["cluster"].(map[string]any)
			routes, _ := cluster["routes"].([]any)
			var want []any
			for _, n := range names {
				want = append(want, "nats-route://"+n+":6222")
			}
			if c["server_name"] != name || js["store_dir"] == nil || cluster["name"] != "fanout" || !reflect.DeepEqual(routes, want) {
				t.Errorf("%s: server_name %v, jetstream store_dir %v, cluster %v routes %v; want %s, a store, fanout and %v",
					path, c["server_name"], js["store_dir"], cluster["name"], routes, name, want)
			}
		}
	})

	// The environment each runtime gives the replicas, with a token for the check.
	compose := clExampleCompose(t)
	deployment := clExampleDeployment(t)
	for name, env := range map[string]map[string]string{"compose": compose, "kubernetes": deployment} {
		t.Run(name, func(t *testing.T) {
			env["FANOUT_ADMIN_TOKEN"] = "x"
			data, err := os.ReadFile(filepath.Join(clExampleDir, "config.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			cfg, probs := config.Parse("config.yaml", data, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			if cfg == nil || len(probs) > 0 {
				t.Fatalf("config.yaml with the %s environment:\n%v", name, probs)
			}
			o := queueOptions(cfg.Queue, nil)
			if servers := strings.Split(o.URL, ","); len(servers) != 3 || o.Replicas != 3 || o.Dir != "" {
				t.Errorf("queue: %d servers (%s), replicas %d, dir %q; want 3 servers, 3 replicas, no dir", len(servers), o.URL, o.Replicas, o.Dir)
			}
			if cfg.Admin.Listen != "0.0.0.0:9090" || cfg.Admin.Token.Value() != "x" {
				t.Errorf("admin listens on %s, token %q; want 0.0.0.0:9090 and the token of the environment", cfg.Admin.Listen, cfg.Admin.Token.Value())
			}
		})
	}
}

// clExampleCompose checks compose.yaml's services and returns the environment of its Fanout
// replicas.
func clExampleCompose(t *testing.T) map[string]string {
	t.Helper()
	var compose struct {
		Services map[string]struct {
			Volumes     []string          `yaml:"volumes"`
			Environment map[string]string `yaml:"environment"`
			Command     []string          `yaml:"command"`
		} `yaml:"services"`
	}
	clReadYAML(t, filepath.Join(clExampleDir, "compose.yaml"), &compose)
	var env map[string]string
	for _, name := range []string{"nats-1", "nats-2", "nats-3", "fanout-1", "fanout-2"} {
		s, ok := compose.Services[name]
		switch {
		case !ok:
			t.Errorf("compose.yaml: no service %s", name)
		case strings.HasPrefix(name, "nats-"):
			if !slices.Contains(s.Volumes, "./nats/"+name+".conf:/etc/nats/nats-server.conf:ro") {
				t.Errorf("compose.yaml: %s does not mount nats/%s.conf: %v", name, name, s.Volumes)
			}
		default:
			if !slices.Contains(s.Volumes, ".:/etc/fanout:ro") ||
				!slices.Equal(s.Command, []string{"serve", "--config", "/etc/fanout/config.yaml"}) {
				t.Errorf("compose.yaml: %s: volumes %v, command %v; want config.yaml served from /etc/fanout", name, s.Volumes, s.Command)
			}
			env = s.Environment
		}
	}
	if len(compose.Services) != 5 {
		t.Errorf("compose.yaml: %d services, want 3 nats and 2 fanout", len(compose.Services))
	}
	return env
}

// clExampleDeployment checks the Kubernetes manifests and returns the environment of the
// Fanout container (secrets as set).
func clExampleDeployment(t *testing.T) map[string]string {
	t.Helper()
	var kustomization struct {
		Resources  []string `yaml:"resources"`
		Generators []struct {
			Name  string   `yaml:"name"`
			Files []string `yaml:"files"`
		} `yaml:"configMapGenerator"`
	}
	clReadYAML(t, filepath.Join(clExampleDir, "kustomization.yaml"), &kustomization)
	if len(kustomization.Generators) != 1 || kustomization.Generators[0].Name != "fanout-config" ||
		!slices.Equal(kustomization.Generators[0].Files, []string{"config.yaml"}) {
		t.Errorf("kustomization.yaml: config maps %+v, want fanout-config from config.yaml", kustomization.Generators)
	}

	type probe struct {
		HTTPGet struct {
			Path string `yaml:"path"`
			Port string `yaml:"port"`
		} `yaml:"httpGet"`
	}
	type manifest struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Env []struct {
							Name      string `yaml:"name"`
							Value     string `yaml:"value"`
							ValueFrom *struct {
								SecretKeyRef *struct{ Name, Key string } `yaml:"secretKeyRef"`
							} `yaml:"valueFrom"`
						} `yaml:"env"`
						Ports []struct {
							Name          string `yaml:"name"`
							ContainerPort int    `yaml:"containerPort"`
						} `yaml:"ports"`
						Liveness     probe `yaml:"livenessProbe"`
						Readiness    probe `yaml:"readinessProbe"`
						VolumeMounts []struct {
							Name      string `yaml:"name"`
							MountPath string `yaml:"mountPath"`
						} `yaml:"volumeMounts"`
					} `yaml:"containers"`
					Volumes []struct {
						Name      string `yaml:"name"`
						ConfigMap struct {
							Name string `yaml:"name"`
						} `yaml:"configMap"`
					} `yaml:"volumes"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	kinds := map[string]manifest{}
	for _, file := range kustomization.Resources {
		f, err := os.Open(filepath.Join(clExampleDir, file))
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(f)
		for {
			var m manifest
			if err := dec.Decode(&m); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			kinds[m.Kind] = m
		}
		f.Close()
	}
	for _, kind := range []string{"Deployment", "Service", "PodDisruptionBudget"} {
		if _, ok := kinds[kind]; !ok {
			t.Errorf("kubernetes: no %s", kind)
		}
	}
	pod := kinds["Deployment"].Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("Deployment: %d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if c.Liveness.HTTPGet.Path != "/healthz" || c.Readiness.HTTPGet.Path != "/readyz" ||
		ports[c.Liveness.HTTPGet.Port] != 9090 || ports[c.Readiness.HTTPGet.Port] != 9090 {
		t.Errorf("Deployment probes: liveness %+v, readiness %+v, ports %v; want /healthz and /readyz on 9090",
			c.Liveness.HTTPGet, c.Readiness.HTTPGet, ports)
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			mounted = mounted || m.MountPath == "/etc/fanout" && m.Name == v.Name && v.ConfigMap.Name == "fanout-config"
		}
	}
	if !mounted {
		t.Errorf("Deployment: the ConfigMap fanout-config is not mounted at /etc/fanout")
	}
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = "from secret " + e.ValueFrom.SecretKeyRef.Name
		default:
			env[e.Name] = e.Value
		}
	}
	if env["FANOUT_ADMIN_TOKEN"] != "from secret fanout-admin" {
		t.Errorf("Deployment: FANOUT_ADMIN_TOKEN is %q, want it from the Secret fanout-admin", env["FANOUT_ADMIN_TOKEN"])
	}
	return env
}

func clReadYAML(t *testing.T, path string, out any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, out); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
