package config

import (
	"os"
	"testing"
)

// TestOrder checks what order_by and on_exhausted decode to: the compiled key, block where
// it is asked for, dead_letter everywhere else.
func TestOrder(t *testing.T) {
	data, err := os.ReadFile("testdata/warn-order.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, probs := Parse("warn-order.yaml", data, fixtureEnv)
	if c == nil {
		t.Fatalf("did not load: %v", probs)
	}
	app, audit := c.Destination("app"), c.Destination("audit")
	if app.OrderBy != `GroupId ?? (From_Account + ":" + To_Account)` || app.Order == nil || app.OnExhausted != OnExhaustedBlock {
		t.Errorf("app: order_by %q (compiled: %v), on_exhausted %q", app.OrderBy, app.Order != nil, app.OnExhausted)
	}
	if audit.OrderBy != "" || audit.Order != nil || audit.OnExhausted != OnExhaustedDeadLetter {
		t.Errorf("audit: order_by %q (compiled: %v), on_exhausted %q", audit.OrderBy, audit.Order != nil, audit.OnExhausted)
	}

	// A reload that changes only order_by changes the destination.
	changed, _ := Parse("warn-order.yaml", []byte(string(data)+"\n"), fixtureEnv)
	changed.Destination("app").OrderBy = "From_Account"
	if d := changed.Diff(c); len(d.Destinations.Changed) != 1 || d.Destinations.Changed[0] != "app" {
		t.Errorf("diff after changing order_by: %+v", d.Destinations)
	}
}
