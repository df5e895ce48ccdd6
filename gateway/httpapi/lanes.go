package httpapi

import (
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// The lane endpoints of the admin API: the ordered destinations' lanes that wait for an
// operator, and the operator's retry or skip.
//
//	GET  /api/v1/lanes[?destination=D]
//	POST /api/v1/lanes/{destination}/{key}/retry
//	POST /api/v1/lanes/{destination}/{key}/skip
//
// A key is any string, the empty one included (the fallback lane): it is written
// percent-encoded in the path (url.PathEscape), and /api/v1/lanes/D//retry is the lane
// of the empty key.

// Lanes is the answer of GET /api/v1/lanes.
type Lanes struct {
	// Blocked are the lanes waiting for an operator, whichever replica consumes them.
	Blocked []BlockedLane `json:"blocked"`
	// Consuming are the ordered destinations' partitions that this replica consumes.
	Consuming []LanePartitions `json:"consuming"`
}

// BlockedLane is a lane whose head delivery gave up (on_exhausted: block).
type BlockedLane struct {
	Destination  string    `json:"destination"`
	Key          string    `json:"key"`
	Partition    int       `json:"partition"`
	EventID      string    `json:"event_id"`
	RequestID    string    `json:"request_id"`
	ReceivedAt   time.Time `json:"received_at,omitzero"`
	Reason       string    `json:"reason"`
	LastStatus   int       `json:"last_status"`
	BodyExcerpt  string    `json:"body_excerpt"`
	LastError    string    `json:"last_error,omitempty"` // the last attempt's error (connection refused, timeout...)
	Attempts     int       `json:"attempts"`
	FirstAttempt time.Time `json:"first_attempt,omitzero"`
	LastAttempt  time.Time `json:"last_attempt,omitzero"`
	BlockedAt    time.Time `json:"blocked_at"`
	// Action is a retry or skip asked and not yet applied by the replica consuming the lane.
	Action string `json:"action,omitempty"`
}

// LanePartitions is what this replica consumes of one ordered destination's lanes.
type LanePartitions struct {
	Destination string `json:"destination"`
	OrderBy     string `json:"order_by"`
	OnExhausted string `json:"on_exhausted"`
	Partitions  []int  `json:"partitions"` // consumed by this replica
	Of          int    `json:"of"`         // the destination's partitions in all
	Blocked     int    `json:"blocked"`    // blocked lanes among those consumed here
}

// LaneRelease is the answer of POST /api/v1/lanes/{destination}/{key}/retry|skip.
type LaneRelease struct {
	Destination string      `json:"destination"`
	Key         string      `json:"key"`
	Action      string      `json:"action"`
	Lane        BlockedLane `json:"lane"` // as it was when the action was asked
	// Applied: the replica consuming the lane applied the action within a few seconds.
	// Otherwise it is recorded, and applied when that replica next looks (or when another
	// takes the lane over).
	Applied bool `json:"applied"`
}

// listLanes serves GET /api/v1/lanes.
func listLanes(c *gin.Context, a Admin) {
	q := c.Request.URL.Query()
	if err := knownParams(q, "destination"); err != nil {
		fail(c, err)
		return
	}
	l, err := a.Lanes(c.Request.Context(), q.Get("destination"))
	answer(c, l, err)
}

// releaseLane serves POST /api/v1/lanes/{destination}/{key}/{retry|skip}. The key is read
// from the escaped path, so that it may hold any character, a slash included.
func releaseLane(c *gin.Context, a Admin) {
	destination := c.Param("destination")
	rest := c.Request.URL.EscapedPath()
	prefix := "/api/v1/lanes/" + url.PathEscape(destination) + "/"
	rest, ok := strings.CutPrefix(rest, prefix)
	i := strings.LastIndexByte(rest, '/')
	if !ok || i < 0 {
		c.PureJSON(404, apiError{Error: "no such endpoint: " + c.Request.Method + " " + c.Request.URL.Path +
			": want /api/v1/lanes/{destination}/{key}/retry or /skip"})
		return
	}
	action := rest[i+1:]
	if action != "retry" && action != "skip" {
		c.PureJSON(404, apiError{Error: "no such endpoint: " + c.Request.Method + " " + c.Request.URL.Path +
			": the action is retry or skip"})
		return
	}
	key, err := url.PathUnescape(rest[:i])
	if err != nil {
		fail(c, &ParamError{"key", err.Error()})
		return
	}
	r, err := a.ReleaseLane(c.Request.Context(), destination, key, action)
	answer(c, r, err)
}
