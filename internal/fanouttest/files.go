package fanouttest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// WriteConfig writes a config file, fanout.yaml, in a fresh folder and returns its path.
func WriteConfig(t testing.TB, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fanout.yaml")
	ReplaceFile(t, path, text)
	return path
}

// ReplaceFile writes text to a new file beside path and renames it over path, as editors
// and Kubernetes ConfigMap updates replace a file: a watcher never reads half of it.
func ReplaceFile(t testing.TB, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// ConfigHeader is how most test configs start: the callback and admin ports on free
// addresses of 127.0.0.1, App without a token, and the embedded queue in dir.
func ConfigHeader(dir string) string {
	return fmt.Sprintf("server: {listen: \"127.0.0.1:0\", path: /callback}\nadmin: {listen: \"127.0.0.1:0\"}\n"+
		"tencent:\n  apps: [{sdkappid: %s}]\nqueue: {dir: %q}\n", App, dir)
}
