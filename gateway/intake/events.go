package intake

import (
	"github.com/fanout-gw/fanout/gateway/eventlog"
	"github.com/fanout-gw/fanout/gateway/tencentim"
	"github.com/fanout-gw/fanout/rules"
)

// Recorder is told of every accepted callback: the event log. Received must not block.
type Recorder interface {
	Received(cb *eventlog.Callback)
}

// record tells the event log of an accepted callback: where it goes, or that it came
// again. The log reads the body's indexed fields later, on its own goroutine: nothing here
// costs more than a few small allocations.
func (in *Intake) record(c *call, ev *rules.Event, m *rules.Match, duplicate bool) {
	if in.events == nil {
		return
	}
	id := c.eventID
	if id == "" { // nothing to store: no route matched
		id = tencentim.EventID(c.query.SdkAppID, ev.Command, c.Body)
	}
	cb := &eventlog.Callback{EventID: id, ReceivedAt: c.start, RequestID: c.RequestID, App: c.query.SdkAppID,
		Command: ev.Command, Query: c.RawQuery, Body: c.Body, Fields: ev.Fields, Routes: m.Routes, Duplicate: duplicate}
	if m.Respond != nil {
		cb.Respond = c.live.Respond[m.RespondIndex].From
	}
	if len(m.Deliveries) > 0 {
		cb.Deliveries = make([]eventlog.Delivery, len(m.Deliveries))
		for i, d := range m.Deliveries {
			cb.Deliveries[i] = eventlog.Delivery{Destination: d.Destination, Routes: d.Routes}
		}
	}
	in.events.Received(cb)
}
