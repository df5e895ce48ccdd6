package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestLoggerDurations: durations are logged as people read them, in both formats, also
// inside groups.
func TestLoggerDurations(t *testing.T) {
	for format, want := range map[string]string{
		"json": `"level":"WARN","msg":"m","retry_in":"8.66s","timeout":"20s","round":{"took":"1m30s"}}`,
		"text": `level=WARN msg=m retry_in=8.66s timeout=20s round.took=1m30s`,
	} {
		var buf bytes.Buffer
		log, err := newLogger(&buf, format, "info")
		if err != nil {
			t.Fatal(err)
		}
		log.Warn("m", "retry_in", 8660*time.Millisecond, "timeout", 20*time.Second, slog.Group("round", "took", 90*time.Second))
		if got := strings.TrimSpace(buf.String()); !strings.HasSuffix(got, want) {
			t.Errorf("%s: %s\nwant it to end with %s", format, got, want)
		}
	}
}
