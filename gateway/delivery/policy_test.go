package delivery

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// configPolicy is the policy of the config's defaults (config.example.yaml).
var configPolicy = Policy{MaxAttempts: 12, Initial: time.Second, Max: 10 * time.Minute, Multiplier: 2, Jitter: 0.2, MaxAge: 24 * time.Hour}

func TestPolicyWait(t *testing.T) {
	noJitter := configPolicy
	noJitter.Jitter = 0
	tests := []struct {
		attempt int
		want    time.Duration
	}{
		{0, time.Second}, // treated as 1
		{1, time.Second},
		{2, 2 * time.Second},
		{4, 8 * time.Second},
		{10, 512 * time.Second},
		{11, 10 * time.Minute}, // 1024s capped at Max
		{1000, 10 * time.Minute},
	}
	for _, tt := range tests {
		t.Run("attempt "+strconv.Itoa(tt.attempt), func(t *testing.T) {
			if got := noJitter.Wait(tt.attempt); got != tt.want {
				t.Errorf("Wait(%d) = %s, want %s", tt.attempt, got, tt.want)
			}
			// With jitter 0.2 every wait is within +/-20% of the plain one, and not always equal.
			lo, hi := time.Duration(float64(tt.want)*0.8), time.Duration(float64(tt.want)*1.2)
			distinct := map[time.Duration]bool{}
			for range 200 {
				w := configPolicy.Wait(tt.attempt)
				if w < lo || w > hi {
					t.Fatalf("Wait(%d) with jitter = %s, want within [%s, %s]", tt.attempt, w, lo, hi)
				}
				distinct[w] = true
			}
			if len(distinct) < 2 {
				t.Errorf("Wait(%d) with jitter 0.2 gave the same wait 200 times", tt.attempt)
			}
		})
	}
}

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(p *Policy)
		want string // "" = valid
	}{
		{"defaults", func(*Policy) {}, ""},
		{"no max age", func(p *Policy) { p.MaxAge = 0 }, ""},
		{"zero attempts", func(p *Policy) { p.MaxAttempts = 0 }, "max_attempts 0: must be at least 1"},
		{"zero initial", func(p *Policy) { p.Initial = 0 }, "backoff initial 0s: must be positive"},
		{"max below initial", func(p *Policy) { p.Max = time.Millisecond }, "backoff max 1ms: must be at least initial 1s"},
		{"shrinking", func(p *Policy) { p.Multiplier = 0.5 }, "backoff multiplier 0.5: must be a number >= 1"},
		{"jitter 1", func(p *Policy) { p.Jitter = 1 }, "backoff jitter 1: must be in [0, 1)"},
		{"negative age", func(p *Policy) { p.MaxAge = -time.Second }, "max_age -1s: must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := configPolicy
			tt.edit(&p)
			err := p.validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("validate = %v, want %q", err, tt.want)
			}
		})
	}
}
