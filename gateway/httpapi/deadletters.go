package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// The dead-letter endpoints of the admin API: their parameters and bodies, checked
// before the Admin is called.

func listDeadLetters(c *gin.Context, a Admin) {
	q := c.Request.URL.Query()
	if err := knownParams(q, "destination", "reason", "since", "until", "after", "limit"); err != nil {
		fail(c, err)
		return
	}
	f, err := filterParams(q)
	if err != nil {
		fail(c, err)
		return
	}
	after, limit, err := pageParams(q)
	if err != nil {
		fail(c, err)
		return
	}
	items, next, err := a.DeadLetters(c.Request.Context(), f, after, int(limit))
	if items == nil {
		items = []DeadLetter{}
	}
	answer(c, DeadLetterPage{Items: items, Next: next}, err)
}

// showDeadLetter serves GET /api/v1/dlq/{id}.
func showDeadLetter(c *gin.Context, a Admin) {
	id, err := pathID(c)
	if err != nil {
		fail(c, err)
		return
	}
	d, err := a.DeadLetter(c.Request.Context(), id)
	answer(c, d, err)
}

// purgeDeadLetter serves DELETE /api/v1/dlq/{id}: 404 when it does not exist.
func purgeDeadLetter(c *gin.Context, a Admin) {
	id, err := pathID(c)
	if err != nil {
		fail(c, err)
		return
	}
	q := c.Request.URL.Query()
	err = knownParams(q, "dry_run")
	dryRun := false
	if err == nil {
		dryRun, err = boolParam(q, "dry_run")
	}
	if err != nil {
		fail(c, err)
		return
	}
	r, err := a.PurgeDeadLetters(c.Request.Context(), Selection{IDs: []uint64{id}}, dryRun)
	if err == nil && r.Matched == 0 {
		err = fmt.Errorf("dead letter %d: %w", id, ErrNotFound)
	}
	answer(c, r, err)
}

// replayRequest is the body of POST /api/v1/dlq/replay: ids, or a filter (all: true for
// an empty one, so that a forgotten filter does not replay everything).
type replayRequest struct {
	IDs    []uint64 `json:"ids"`
	Filter *struct {
		Destination string `json:"destination"`
		Reason      string `json:"reason"`
		Since       string `json:"since"`
		Until       string `json:"until"`
	} `json:"filter"`
	All    bool `json:"all"`
	DryRun bool `json:"dry_run"`
}

// The fields of a replay body, and of its filter: an unknown one is refused, naming these.
var (
	replayFields = []string{"ids", "filter", "all", "dry_run"}
	filterFields = []string{"destination", "reason", "since", "until"}
)

func replayDeadLetters(c *gin.Context, a Admin) {
	var req replayRequest
	raw, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxRequestBytes))
	if err != nil {
		fail(c, bodyError(err))
		return
	}
	if err := knownFields(raw); err != nil {
		fail(c, err)
		return
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fail(c, bodyError(err))
		return
	}
	if dec.More() {
		fail(c, &ParamError{"body", "more than one JSON value"})
		return
	}
	var s Selection
	switch {
	case req.IDs != nil && (req.Filter != nil || req.All):
		fail(c, &ParamError{"ids", "give ids or a filter (or all), not both"})
		return
	case req.IDs != nil:
		if len(req.IDs) == 0 {
			fail(c, &ParamError{"ids", "empty"})
			return
		}
		if slices.Contains(req.IDs, 0) {
			fail(c, &ParamError{"ids", "0 is not a dead-letter id"})
			return
		}
		s.IDs = req.IDs
	default:
		if req.Filter != nil {
			var err error
			s.Filter, err = parseFilter("filter.", func(name string) string {
				return map[string]string{"destination": req.Filter.Destination, "reason": req.Filter.Reason,
					"since": req.Filter.Since, "until": req.Filter.Until}[name]
			})
			if err != nil {
				fail(c, err)
				return
			}
		}
		if s.Filter.IsZero() && !req.All {
			fail(c, &ParamError{"filter", `give ids, a non-empty filter, or "all": true to replay every dead letter`})
			return
		}
	}
	r, err := a.ReplayDeadLetters(c.Request.Context(), s, req.DryRun)
	if pe := (*ParamError)(nil); errors.As(err, &pe) && s.IDs == nil && !strings.HasPrefix(pe.Param, "filter.") {
		pe.Param = "filter." + pe.Param // the filter's fields are named so in this body
	}
	answer(c, r, err)
}

// knownFields refuses a field of a replay body, or of its filter, that the endpoint does
// not take, listing those it takes: a misspelled filter field must not widen a replay. A
// body that is no JSON object is left to the decoder, which says what is wrong with it.
func knownFields(raw []byte) error {
	var body map[string]json.RawMessage
	if json.Unmarshal(raw, &body) != nil {
		return nil
	}
	if err := knownKeys("", body, replayFields); err != nil {
		return err
	}
	var filter map[string]json.RawMessage
	if json.Unmarshal(body["filter"], &filter) != nil {
		return nil
	}
	return knownKeys("filter.", filter, filterFields)
}

func knownKeys(prefix string, m map[string]json.RawMessage, known []string) error {
	var unknown []string
	for k := range m {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	return &ParamError{prefix + unknown[0], "unknown field (known: " + strings.Join(known, ", ") + ")"}
}

// bodyError names the JSON field a decoding error is about.
func bodyError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &te):
		return &ParamError{te.Field, fmt.Sprintf("want %s, got a JSON %s", te.Type, te.Value)}
	case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF):
		return &ParamError{"body", "not JSON: " + err.Error()}
	case errors.Is(err, io.EOF):
		return &ParamError{"body", `empty: want {"ids": [...]} or {"filter": {...}}`}
	case errors.As(err, &tooLarge):
		return &ParamError{"body", fmt.Sprintf("larger than %d bytes", tooLarge.Limit)}
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name, _ = strconv.Unquote(name)
		return &ParamError{name, "unknown field"}
	}
	return &ParamError{"body", err.Error()}
}

// purgeDeadLetters serves DELETE /api/v1/dlq: by id (repeatable) or by filter; all=true
// deletes everything, which nothing else does.
func purgeDeadLetters(c *gin.Context, a Admin) {
	q := c.Request.URL.Query()
	if err := knownParams(q, "id", "destination", "reason", "since", "until", "all", "dry_run"); err != nil {
		fail(c, err)
		return
	}
	dryRun, err := boolParam(q, "dry_run")
	if err != nil {
		fail(c, err)
		return
	}
	all, err := boolParam(q, "all")
	if err != nil {
		fail(c, err)
		return
	}
	f, err := filterParams(q)
	if err != nil {
		fail(c, err)
		return
	}
	var s Selection
	if ids := q["id"]; ids != nil {
		if !f.IsZero() || all {
			fail(c, &ParamError{"id", "give ids or a filter (or all), not both"})
			return
		}
		for _, v := range ids {
			id, err := strconv.ParseUint(v, 10, 64)
			if err != nil || id == 0 {
				fail(c, &ParamError{"id", fmt.Sprintf("%q: want a dead-letter id (a positive integer)", v)})
				return
			}
			s.IDs = append(s.IDs, id)
		}
	} else {
		s.Filter = f
		if f.IsZero() && !all {
			fail(c, &ParamError{"all", "no filter: give id, destination, reason, since or until, or all=true to delete every dead letter"})
			return
		}
	}
	r, err := a.PurgeDeadLetters(c.Request.Context(), s, dryRun)
	answer(c, r, err)
}

// knownParams refuses parameters the endpoint does not take: a misspelled filter must not
// widen a purge to everything.
func knownParams(q url.Values, known ...string) error {
	var unknown []string
	for k := range q {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	return &ParamError{unknown[0], "unknown parameter (known: " + strings.Join(known, ", ") + ")"}
}

func filterParams(q url.Values) (DeadLetterFilter, error) {
	return parseFilter("", q.Get)
}

// parseFilter reads destination, reason, since and until through get; prefix goes before
// the names in errors.
func parseFilter(prefix string, get func(string) string) (DeadLetterFilter, error) {
	f := DeadLetterFilter{Destination: get("destination"), Reason: get("reason")}
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		v := get(t.name)
		if v == "" {
			continue
		}
		tm, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return f, &ParamError{prefix + t.name, fmt.Sprintf("%q: want an RFC 3339 time such as 2025-01-02T15:04:05Z", v)}
		}
		*t.dst = tm
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return f, &ParamError{prefix + "until", "must be after since"}
	}
	return f, nil
}

func uintParam(q url.Values, name string, def uint64) (uint64, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, &ParamError{name, fmt.Sprintf("%q: want a non-negative integer", v)}
	}
	return n, nil
}

func boolParam(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, &ParamError{name, fmt.Sprintf("%q: want true or false", v)}
	}
	return b, nil
}

func pathID(c *gin.Context) (uint64, error) {
	v := c.Param("id")
	id, err := strconv.ParseUint(v, 10, 64)
	if err != nil || id == 0 {
		return 0, &ParamError{"id", fmt.Sprintf("%q: want a dead-letter id (a positive integer)", v)}
	}
	return id, nil
}

// pageParams reads a list's paging parameters: after (the cursor, 0 for the first page) and
// limit (DefaultListLimit when absent, 1 to MaxListLimit).
func pageParams(q url.Values) (after, limit uint64, err error) {
	if after, err = uintParam(q, "after", 0); err != nil {
		return 0, 0, err
	}
	limit, err = uintParam(q, "limit", DefaultListLimit)
	if err == nil && (limit < 1 || limit > MaxListLimit) {
		err = &ParamError{"limit", fmt.Sprintf("%d: want 1 to %d", limit, MaxListLimit)}
	}
	return after, limit, err
}
