package fanouttest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// kitDir is the folder of the kit's source, found from the source itself, so that tests in
// any package (or in a copy of the repository) find the files beside it.
func kitDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("fanouttest: cannot locate the test kit's source")
	}
	return filepath.Dir(file)
}

// ModuleRoot is the folder of Fanout's go.mod.
func ModuleRoot() string { return filepath.Join(kitDir(), "..", "..") }

// goCommand runs the go command of the toolchain running the tests in the module root, and
// returns its standard output.
func goCommand(args ...string) ([]byte, error) {
	tool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(tool); err != nil {
		if tool, err = exec.LookPath("go"); err != nil {
			return nil, fmt.Errorf("no go tool: %w", err)
		}
	}
	var stderr bytes.Buffer
	cmd := exec.Command(tool, args...)
	cmd.Dir, cmd.Stderr = ModuleRoot(), &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, &stderr)
	}
	return out, nil
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
		var err error
		if buildDir, err = os.MkdirTemp("", "fanout-test-bin-"); err != nil {
			return "", err
		}
		bin := filepath.Join(buildDir, "fanout")
		_, err = goCommand("build", "-ldflags", "-X main.version="+Version, "-o", bin, "./cmd/fanout")
		return bin, err
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
		// A test binary carries no module list: ask go.mod.
		out, err := goCommand("list", "-m", "-f", "{{.Version}}", natsServerModule)
		if err != nil {
			return "", err
		}
		bin := filepath.Join(os.TempDir(), "fanout-test-nats-server-"+string(bytes.TrimSpace(out)), "nats-server")
		if _, err := os.Stat(bin); err == nil {
			return bin, nil
		}
		if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
			return "", err
		}
		// Build beside the target, then rename: a concurrent run never sees half a binary.
		tmp := fmt.Sprintf("%s.%d.tmp", bin, os.Getpid())
		if _, err := goCommand("build", "-o", tmp, natsServerModule); err != nil {
			return "", err
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
