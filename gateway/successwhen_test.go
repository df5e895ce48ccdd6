package gateway

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

// TestSuccessWhenRetriesABotRefusal: a DingTalk-like robot answers 200 with errcode 130101
// ("send too fast") twice, then 0. With success_when, the gateway retries the first two as
// failed attempts and counts them so, and the third is the delivery.
func TestSuccessWhenRetriesABotRefusal(t *testing.T) {
	bot := fanouttest.NewReceiver(t, func(r fanouttest.Request) fanouttest.Answer {
		if r.N <= 2 {
			return fanouttest.Answer{Body: `{"errcode":130101,"errmsg":"send too fast, exceed 20 times per minute"}`}
		}
		return fanouttest.Answer{Body: `{"errcode":0,"errmsg":"ok"}`}
	})
	g := startGateway(t, fanouttest.WriteConfig(t, fmt.Sprintf(`
%s
destinations:
  bot:
    url: %q
    success_when: status == 200 && json.errcode == 0
    retry: {max_attempts: 5, backoff: {initial: 100ms, max: 100ms, multiplier: 1, jitter: 0}}
routes:
  - name: all
    to: [bot]
`, fanouttest.ConfigHeader(filepath.Join(t.TempDir(), "queue")), bot.URL()+"/robot/send?access_token=t")))
	acceptMessage(t, g, "bot-1")
	fanouttest.WaitFor(t, fanouttest.WaitTimeout, "the delivery", func() bool {
		return scrapeMetrics(t, g).Sum("fanout_deliveries_total", map[string]string{"destination": "bot", "outcome": "delivered"}) == 1
	})
	var got []string
	for _, r := range bot.Requests() {
		got = append(got, r.Header.Get("Fanout-Attempt"))
	}
	if want := []string{"1", "2", "3"}; !slices.Equal(got, want) {
		t.Errorf("Fanout-Attempt = %v, want %v", got, want)
	}
	if n := scrapeMetrics(t, g).Sum("fanout_delivery_attempts_total", map[string]string{"destination": "bot", "result": "success_when"}); n != 2 {
		t.Errorf("attempts counted as success_when failures: %g, want 2", n)
	}
	t.Logf("bot answered errcode 130101 twice, then 0: attempts %v, 2 counted as result=\"success_when\"", got)
}
