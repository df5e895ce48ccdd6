package fanouttest

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// PayloadDir is the folder of Tencent IM's real callback bodies, one file per command
// (C2C.CallbackAfterSendMsg.json, ...), as published in Tencent's documentation. It is an
// absolute path, so tests in any package (and the binaries they run) can read it.
func PayloadDir() string { return filepath.Join(kitDir(), "tencentim") }

// PayloadFiles lists the payload files, sorted, and fails t when there are none.
func PayloadFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(PayloadDir(), "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no payloads in %s: %v", PayloadDir(), err)
	}
	sort.Strings(files)
	return files
}

// Payload is the body of one payload file, by name (with or without ".json").
func Payload(t testing.TB, name string) []byte {
	t.Helper()
	if filepath.Ext(name) != ".json" {
		name += ".json"
	}
	b, err := os.ReadFile(filepath.Join(PayloadDir(), name))
	if err != nil {
		t.Fatalf("payload %s: %v", name, err)
	}
	return b
}
