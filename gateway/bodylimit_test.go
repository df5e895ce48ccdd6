package gateway

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fanout-gw/fanout/gateway/config"
	"github.com/fanout-gw/fanout/gateway/queue"
	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// paddedCallback is a C2C.CallbackAfterSendMsg body of exactly size bytes.
func paddedCallback(t testing.TB, size int) []byte {
	t.Helper()
	head := []byte(`{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"jared","Pad":"`)
	tail := []byte(`"}`)
	if size < len(head)+len(tail) {
		t.Fatalf("size %d is too small", size)
	}
	return append(append(head, bytes.Repeat([]byte("x"), size-len(head)-len(tail))...), tail...)
}

// TestBodyAtTheEmbeddedLimit: the largest max_body_bytes check accepts for the embedded
// queue holds a callback that size, as a job and as a dead letter.
func TestBodyAtTheEmbeddedLimit(t *testing.T) {
	if most := queue.MaxBodyFor(queue.EmbeddedMaxPayload); config.MaxBodyEmbedded > most {
		t.Fatalf("config.MaxBodyEmbedded %d is over what the embedded queue stores, %d", config.MaxBodyEmbedded, most)
	}
	refuse := fanouttest.NewReceiver(t, answered(http.StatusBadRequest))
	g := startGateway(t, fanouttest.WriteConfig(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", max_body_bytes: %d}
admin: {listen: "127.0.0.1:0"}
tencent: {apps: [{sdkappid: %s}]}
queue: {dir: %q}
destinations:
  refuse: {url: %q}
routes:
  - {name: all, to: [refuse]}
`, config.MaxBodyEmbedded, fanouttest.App, filepath.Join(t.TempDir(), "queue"), refuse.URL())))

	body := paddedCallback(t, config.MaxBodyEmbedded)
	accept(t, g, fanouttest.CallbackQuery(fanouttest.App, "C2C.CallbackAfterSendMsg"), body)
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the dead letter", func() bool {
		n, err := g.queue.Load().DeadLetterCount(context.Background(), "refuse")
		return err == nil && n == 1
	})
	dead, _, err := g.queue.Load().ListDeadLetters(context.Background(), queue.DeadLetterFilter{}, 0, 1)
	if err != nil || len(dead) != 1 || !bytes.Equal(dead[0].Body, body) || dead[0].Reason != "status 400" {
		t.Fatalf("dead letters: %d, %v", len(dead), err)
	}

	if a := callback(t, g, fanouttest.CallbackQuery(fanouttest.App, "C2C.CallbackAfterSendMsg"), append(body, ' ')); a.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("a byte over max_body_bytes: answered %d %s, want 413", a.Status, a.Body)
	}
}

// TestBodyOverExternalMaxPayload: with an external JetStream whose max_payload (1 MB by
// default) holds less than max_body_bytes, the start says so, and a body the queue cannot
// store (over 737280 bytes, whatever the server would take of it) is answered 413, not 503.
func TestBodyOverExternalMaxPayload(t *testing.T) {
	nats := fanouttest.StartNATSServer(t, "small-payload")
	rc := fanouttest.NewReceiver(t, nil)
	g, logs := startGatewayWithLog(t, fanouttest.WriteConfig(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
tencent: {apps: [{sdkappid: %s}]}
queue: {url: %q}
destinations:
  rc: {url: %q}
routes:
  - {name: all, to: [rc]}
`, fanouttest.App, nats.URL(), rc.URL())))

	wantWarn := `level=WARN msg="server.max_body_bytes is more than the queue stores in one message: larger bodies are answered 413" max_body_bytes=1048576 queue_max_body_bytes=737280 jetstream_max_payload=1048576`
	if got := regexp.MustCompile(`(?m)^time=\S+ (.*jetstream_max_payload.*)$`).FindStringSubmatch(logs.String()); got == nil || got[1] != wantWarn {
		t.Errorf("start log:\n%s\nwant the line:\n%s", logs, wantWarn)
	}

	q := fanouttest.CallbackQuery(fanouttest.App, "C2C.CallbackAfterSendMsg")
	want := `{"ActionStatus":"FAIL","ErrorCode":1,"ErrorInfo":"body larger than the queue stores (737280 bytes, with JetStream's max_payload of 1048576)"}`
	for _, size := range []int{800_000, 737_281} {
		if a := callback(t, g, q, paddedCallback(t, size)); a.Status != http.StatusRequestEntityTooLarge || string(a.Body) != want {
			t.Errorf("%d bytes: answered %d %s\nwant 413 %s", size, a.Status, a.Body, want)
		}
	}
	if strings.Contains(logs.String(), "not stored") || strings.Contains(logs.String(), "maximum payload") {
		t.Errorf("the refusal is logged as an outage:\n%s", logs)
	}
	fits := paddedCallback(t, 737_280)
	accept(t, g, q, fits)
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the delivery", func() bool { return len(rc.WithBody(fits)) == 1 })
}
