// Package fanouttest is the test kit of Fanout's tests, and only tests import it:
//
//   - Tencent IM's real callback payloads (PayloadDir, PayloadFiles, Payload), its Sign and
//     callback queries (Sign, CallbackQuery, SignedCallbackQuery, PostCallback, C2CMessage);
//   - a recording downstream webhook (Receiver) that answers as a test says, holds requests
//     until released (Answer.Hold) and tells what came (Requests, Keys, Delivered, Missing,
//     InFlight), and the Standard Webhooks signature its requests should carry;
//   - waiting for a condition with a deadline (WaitFor, WaitForNone), never a bare sleep;
//   - free loopback ports (FreePort, FreeAddr), an HTTP client (Do);
//   - config files written whole, as editors replace them (WriteConfig, ReplaceFile);
//   - how bunched a series of times is (MostWithin), for benchmarks;
//   - the real binaries, each built once (FanoutBinary, NATSServerBinary), and the processes
//     that run them (StartFanout, NATSServer, StartProcess), stopped by PID;
//   - a Prometheus text reader (ScrapeMetrics, ParseMetrics, Metrics.Sum) and the value
//     fanout_config_hash has for a file (ConfigHash);
//   - the routing scenario (RunRouting): every payload through a gateway, in process or a
//     process, to exactly the destinations its routes name.
//
// It imports none of Fanout's own packages: the white-box tests of any package, gateway
// included, can use it without an import cycle. Starters that need Fanout's Go API (an
// in-process gateway) belong to the tests of that package.
package fanouttest
