package e2e

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// TestExternalJetStream runs the routing scenario on a real nats-server process (queue.url)
// instead of the embedded queue: a few payloads to several destinations.
func TestExternalJetStream(t *testing.T) {
	nats := fanouttest.StartNATSServer(t, "external")
	fanouttest.RunRouting(t, fmt.Sprintf("  url: %q", nats.URL()), []string{
		"Alert.RequestOverLimit.json",
		"C2C.CallbackAfterSendMsg.json",
		"Group.CallbackBeforeSendMsg.json",
		"Sns.CallbackFriendAdd.json",
		"State.StateChange.json",
	}, func(t *testing.T, config string) (string, string) {
		f := fanouttest.StartFanout(t, fanouttest.FanoutBinary(t), config)
		return f.Listen, f.Admin
	})
	// The jobs went through that server: its store holds Fanout's streams.
	for _, stream := range []string{"FANOUT_JOBS", "FANOUT_DLQ"} {
		matches, _ := filepath.Glob(filepath.Join(nats.Dir, "jetstream", "*", "streams", stream))
		if len(matches) == 0 {
			t.Errorf("no stream %s in the nats-server store %s", stream, nats.Dir)
		}
	}
}
