package fanouttest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// ModuleRoot is the folder of Fanout's go.mod, found from the kit's own source, so that
// tests in any package (or a copy of the repository) build from it.
func ModuleRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("fanouttest: cannot locate the test kit's source")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// goTool is the go command of the toolchain running the tests.
func goTool() (string, error) {
	tool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(tool); err == nil {
		return tool, nil
	}
	return exec.LookPath("go")
}

// built is a binary built at most once per test process.
type built struct {
	once sync.Once
	path string
	err  error
}

func (b *built) get(t testing.TB, build func() (string, error)) string {
	t.Helper()
	b.once.Do(func() { b.path, b.err = build() })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

var (
	fanoutBinary built
	natsBinary   built
	buildDir     string // where FanoutBinary builds; Main removes it
)

// Version is the version the binary of FanoutBinary reports, in `fanout version` and in the
// User-Agent of its deliveries (fanout/Version).
const Version = "e2e-test"

// FanoutBinary builds ./cmd/fanout with `go build`, once per test process, into a
// temporary folder, and returns the binary's path. A package whose tests call it has a
// TestMain that calls Main, which removes the folder at the end.
func FanoutBinary(t testing.TB) string {
	t.Helper()
	return fanoutBinary.get(t, func() (string, error) {
		tool, err := goTool()
		if err != nil {
			return "", fmt.Errorf("no go tool to build fanout: %w", err)
		}
		if buildDir, err = os.MkdirTemp("", "fanout-test-bin-"); err != nil {
			return "", err
		}
		bin := filepath.Join(buildDir, "fanout")
		cmd := exec.Command(tool, "build", "-ldflags", "-X main.version="+Version, "-o", bin, "./cmd/fanout")
		cmd.Dir = ModuleRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build ./cmd/fanout: %w\n%s", err, out)
		}
		return bin, nil
	})
}

// natsServerModule is the module of nats-server, whose version go.mod fixes.
const natsServerModule = "github.com/nats-io/nats-server/v2"

// NATSServerBinary builds the nats-server of go.mod's version, once per test process, and
// caches it under os.TempDir() by version, so that the packages and runs that need it build
// it once between them.
func NATSServerBinary(t testing.TB) string {
	t.Helper()
	return natsBinary.get(t, func() (string, error) {
		tool, err := goTool()
		if err != nil {
			return "", fmt.Errorf("no go tool to build nats-server: %w", err)
		}
		// A test binary carries no module list: ask go.mod.
		list := exec.Command(tool, "list", "-m", "-f", "{{.Version}}", natsServerModule)
		list.Dir = ModuleRoot()
		out, err := list.Output()
		version := string(bytes.TrimSpace(out))
		if err != nil || version == "" {
			return "", fmt.Errorf("go list -m %s: %v", natsServerModule, err)
		}
		bin := filepath.Join(os.TempDir(), "fanout-test-nats-server-"+version, "nats-server")
		if _, err := os.Stat(bin); err == nil {
			return bin, nil
		}
		if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
			return "", err
		}
		// Build beside the target, then rename: a concurrent run never sees half a binary.
		tmp := fmt.Sprintf("%s.%d.tmp", bin, os.Getpid())
		build := exec.Command(tool, "build", "-o", tmp, natsServerModule)
		build.Dir = ModuleRoot()
		if out, err := build.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build %s: %w\n%s", natsServerModule, err, out)
		}
		return bin, os.Rename(tmp, bin)
	})
}

// Main runs a package's tests and removes what FanoutBinary built: call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}
