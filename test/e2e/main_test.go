package e2e

import (
	"testing"

	"github.com/fanout-gw/fanout/internal/fanouttest"
)

func TestMain(m *testing.M) { fanouttest.Main(m) }

// c2cQuery is the query of a C2C.CallbackAfterSendMsg callback of the tests' app, which
// has no callback token.
var c2cQuery = fanouttest.CallbackQuery(fanouttest.App, "C2C.CallbackAfterSendMsg")
