package fanouttest

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// Sample is one line of a Prometheus text page: a series and its value.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Metrics is a scrape of a /metrics page, in page order.
type Metrics []Sample

// Sum adds the values of the series of name whose labels include every pair of labels (nil:
// every series of name); 0 when there is none.
func (m Metrics) Sum(name string, labels map[string]string) float64 {
	sum := 0.0
	for _, s := range m {
		if s.Name == name && hasLabels(s.Labels, labels) {
			sum += s.Value
		}
	}
	return sum
}

func hasLabels(got, want map[string]string) bool {
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// ConfigHash is the value of fanout_config_hash for a config file holding text: the first
// 48 bits of its SHA-256 (exact in a float64), worked out here rather than with Fanout's
// config package.
func ConfigHash(text string) float64 {
	sum := sha256.Sum256([]byte(text))
	return float64(binary.BigEndian.Uint64(sum[:8]) >> 16)
}

// ScrapeMetrics GETs a /metrics page (with a bearer token when token is set) and parses it;
// it fails the test when the page cannot be had or read.
func ScrapeMetrics(t testing.TB, url, token string) Metrics {
	t.Helper()
	status, body := Do(http.MethodGet, url, token, nil)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, status, body)
	}
	m, err := ParseMetrics(string(body))
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return m
}

// ParseMetrics reads the Prometheus text format: comments and blank lines are skipped, a
// timestamp after the value is ignored.
func ParseMetrics(text string) (Metrics, error) {
	var m Metrics
	for n, line := range strings.Split(text, "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d %q: %w", n+1, line, err)
		}
		m = append(m, s)
	}
	return m, nil
}

// parseSample reads `name{a="x",b="y"} value [timestamp]`.
func parseSample(line string) (Sample, error) {
	s := Sample{Labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return s, fmt.Errorf("no value")
	}
	s.Name = line[:i]
	rest := line[i:]
	if strings.HasPrefix(rest, "{") {
		var err error
		if rest, err = parseLabels(rest[1:], s.Labels); err != nil {
			return s, err
		}
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return s, fmt.Errorf("no value")
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return s, err
	}
	s.Value = v
	return s, nil
}

// parseLabels reads the pairs of a label set up to its closing brace into into, and
// returns what follows the brace. Values are quoted, with \\, \" and \n escaped.
func parseLabels(s string, into map[string]string) (string, error) {
	for {
		s = strings.TrimLeft(s, ", ")
		if rest, ok := strings.CutPrefix(s, "}"); ok {
			return rest, nil
		}
		name, rest, ok := strings.Cut(s, `="`)
		if !ok {
			return "", fmt.Errorf("bad label set at %q", s)
		}
		var value strings.Builder
		i := 0
		for ; i < len(rest) && rest[i] != '"'; i++ {
			if rest[i] == '\\' && i+1 < len(rest) {
				i++
				if rest[i] == 'n' {
					value.WriteByte('\n')
					continue
				}
			}
			value.WriteByte(rest[i])
		}
		if i == len(rest) {
			return "", fmt.Errorf("label %s: unterminated value", name)
		}
		into[name] = value.String()
		s = rest[i+1:]
	}
}
