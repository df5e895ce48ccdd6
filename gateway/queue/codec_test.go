package queue

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		job  Job
	}{
		{"every field", testJob("1", "audit")},
		{"a later attempt", Job{EventID: "e", Destination: "d", Attempt: 7, Body: []byte("{}")}},
		{"replayed", Job{EventID: "e", Destination: "d", ReceivedAt: time.Unix(100, 0), Since: time.Unix(200, 5)}},
		{"empty", Job{}},
		{"ordered", Job{EventID: "e", Destination: "d", Ordered: true, Key: "jared:Jonh", Body: []byte("{}")}},
		{"ordered, fallback lane", Job{EventID: "e", Destination: "d", Ordered: true, Body: []byte("{}")}},
		{"no routes, zero time", Job{EventID: "e", Destination: "d", Body: []byte("{}")}},
		{"before 1970", Job{EventID: "e", Destination: "d", ReceivedAt: time.Date(1960, 1, 1, 0, 0, 0, 1, time.UTC)}},
		{"large body and utf-8", Job{
			EventID: "é", Destination: "d", Routes: []string{"", "路由"},
			Body: []byte(strings.Repeat(`{"Text":"你好"}`, 10000)), Query: "a=b&c=%20",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame := appendFrame(nil, &tt.job)
			if len(frame) > frameSize(&tt.job) {
				t.Errorf("frame is %d bytes, frameSize said at most %d", len(frame), frameSize(&tt.job))
			}
			got, err := decodeFrame(frame)
			if err != nil {
				t.Fatalf("decodeFrame: %v", err)
			}
			if len(tt.job.Routes) == 0 && got.Routes != nil {
				t.Errorf("Routes = %q, want nil", got.Routes)
			}
			if diff := sameJob(got, tt.job); diff != "" {
				t.Error(diff)
			}
			at, err := receivedAtOf(frame)
			if err != nil || !at.Equal(tt.job.ReceivedAt) {
				t.Errorf("receivedAtOf = %v, %v; want %v", at, err, tt.job.ReceivedAt)
			}
		})
	}
}

func TestFrameRejectsBadInput(t *testing.T) {
	full := appendFrame(nil, &Job{EventID: "event", Destination: "d", Routes: []string{"r1", "r2"}, Query: "q"})
	tests := map[string][]byte{
		"empty":           nil,
		"unknown version": {9, 0},
		"huge length":     {frameVersion, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"many routes":     {frameVersion, 0, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0x03},
		"huge lane key":   {frameVersion, 0, 1, 0, 0xff, 0xff, 0x03},
	}
	// Every cut inside the header is truncated (the body may be empty).
	for i := 0; i < len(full); i++ {
		tests[fmt.Sprintf("cut at %d", i)] = full[:i]
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := decodeFrame(data); err == nil {
				t.Errorf("decodeFrame(%q) succeeded", data)
			}
		})
	}
}

func FuzzDecodeFrame(f *testing.F) {
	f.Add(appendFrame(nil, &Job{EventID: "e", Destination: "d", Routes: []string{"r"}, Body: []byte("{}")}))
	f.Add([]byte{frameVersion})
	f.Fuzz(func(t *testing.T, data []byte) {
		j, err := decodeFrame(data) // must not panic
		if err != nil {
			return
		}
		again, err := decodeFrame(appendFrame(nil, &j))
		if err != nil || sameJob(again, j) != "" {
			t.Errorf("re-encoding %q does not round-trip: %v %s", data, err, sameJob(again, j))
		}
	})
}

// TestFrameVersion1 reads a job stored by a Fanout whose frames had no attempt number: it is
// a job never tried, so its next attempt is the first.
func TestFrameVersion1(t *testing.T) {
	job := testJob("old", "audit")
	v2 := appendFrame(nil, &job)
	// Version 1 is version 2 without the attempt, since and lane (one byte each here), which
	// follow the varint of ReceivedAt.
	d := frameDecoder{b: v2[1:]}
	d.varint()
	at := len(v2) - len(d.b)
	v1 := append([]byte{frameVersionV1}, v2[1:at]...)
	v1 = append(v1, v2[at+3:]...)
	got, err := decodeFrame(v1)
	if err != nil {
		t.Fatalf("decodeFrame(v1): %v", err)
	}
	if diff := sameJob(got, job); diff != "" {
		t.Error(diff)
	}
	if got, err := receivedAtOf(v1); err != nil || !got.Equal(job.ReceivedAt) {
		t.Errorf("receivedAtOf(v1) = %v, %v", got, err)
	}
}
