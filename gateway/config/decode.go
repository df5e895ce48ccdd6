package config

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fanout-gw/fanout/gateway/webhook"
	"github.com/fanout-gw/fanout/rules"
)

// decoder walks a yaml.Node tree by hand so that every problem carries its position
// (yaml.v3 loses KnownFields inside custom unmarshalers, go-yaml/yaml#460), and collects
// problems instead of stopping at the first.
type decoder struct {
	file  string
	env   func(string) (string, bool)
	src   []byte // the file, for positions yaml.v3 does not give
	probs Problems
}

func (d *decoder) add(n *yaml.Node, path string, warning bool, format string, args ...any) {
	p := Problem{File: d.file, Path: path, Message: fmt.Sprintf(format, args...), Warning: warning}
	if n != nil {
		p.Line, p.Column = n.Line, n.Column
	}
	d.probs = append(d.probs, p)
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.add(n, path, false, format, args...)
}

func (d *decoder) warnf(n *yaml.Node, path, format string, args ...any) {
	d.add(n, path, true, format, args...)
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return "a scalar"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// field decodes one key of a mapping.
type field func(v *yaml.Node, path string)

// mapping decodes a mapping node key by key, in document order. Unknown and repeated keys
// are errors (with a "did you mean" for the former).
func (d *decoder) mapping(n *yaml.Node, path string, fields map[string]field) bool {
	n = resolve(n)
	if isNull(n) {
		return true
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "want a mapping, got %s", kindName(n))
		return false
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		p := join(path, k.Value)
		f, ok := fields[k.Value]
		switch {
		case !ok:
			msg := fmt.Sprintf("unknown key %q", k.Value)
			if s, ok := rules.Suggest(k.Value, keys(fields)); ok {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.errorf(k, path, "%s", msg)
		case seen[k.Value]:
			d.errorf(k, p, "key repeated")
		default:
			seen[k.Value] = true
			f(v, p)
		}
	}
	return true
}

func keys(fields map[string]field) []string {
	out := make([]string, 0, len(fields))
	for k := range fields {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// str returns a scalar's value with ${VAR} expanded.
func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	if isNull(n) {
		return "", true
	}
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, path, "want a string, got %s", kindName(n))
		return "", false
	}
	s, err := expand(n.Value, d.env)
	if err != nil {
		d.errorf(n, path, "%v", err)
		return "", false
	}
	return s, true
}

func (d *decoder) setStr(dst *string) field {
	return func(n *yaml.Node, path string) {
		if s, ok := d.str(n, path); ok {
			*dst = s
		}
	}
}

func (d *decoder) setSecret(dst *Secret) field {
	return func(n *yaml.Node, path string) {
		if s, ok := d.str(n, path); ok {
			*dst = Secret(s)
		}
	}
}

func (d *decoder) setBool(dst *bool) field {
	return func(n *yaml.Node, path string) {
		s, ok := d.str(n, path)
		if !ok {
			return
		}
		b, err := strconv.ParseBool(s)
		if err != nil {
			d.errorf(n, path, "invalid boolean %q: want true or false", s)
			return
		}
		*dst = b
	}
}

func (d *decoder) setInt(dst *int, lo, hi int) field {
	return func(n *yaml.Node, path string) {
		s, ok := d.str(n, path)
		if !ok {
			return
		}
		v, err := strconv.Atoi(s)
		if err != nil {
			d.errorf(n, path, "invalid integer %q", s)
			return
		}
		if v < lo || v > hi {
			d.errorf(n, path, "%d is out of range: want %d to %d", v, lo, hi)
			return
		}
		*dst = v
	}
}

func (d *decoder) setFloat(dst *float64, lo, hi float64) field {
	return func(n *yaml.Node, path string) {
		s, ok := d.str(n, path)
		if !ok {
			return
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) {
			d.errorf(n, path, "invalid number %q", s)
			return
		}
		if v < lo || v > hi {
			d.errorf(n, path, "%v is out of range: want %v to %v", v, lo, hi)
			return
		}
		*dst = v
	}
}

// setDuration accepts Go durations (500ms, 10s, 2m, 24h) and days (14d).
func (d *decoder) setDuration(dst *time.Duration, positive bool) field {
	return func(n *yaml.Node, path string) {
		s, ok := d.str(n, path)
		if !ok {
			return
		}
		v, err := parseDuration(s)
		if err != nil {
			d.errorf(n, path, "invalid duration %q: want e.g. 500ms, 10s, 2m, 24h, 14d", s)
			return
		}
		if v < 0 || (positive && v == 0) {
			d.errorf(n, path, "duration must be positive, got %s", s)
			return
		}
		*dst = v
	}
}

func parseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 32)
		if err != nil {
			return 0, err
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}

// setSize accepts byte counts (1048576) and units (512KiB, 1MiB, 10MB).
func (d *decoder) setSize(dst *int64) field {
	return func(n *yaml.Node, path string) {
		s, ok := d.str(n, path)
		if !ok {
			return
		}
		v, ok := parseSize(s)
		if !ok {
			d.errorf(n, path, "invalid size %q: want e.g. 1048576, 512KiB, 1MiB", s)
			return
		}
		*dst = v
	}
}

// parseSize reads a positive byte count (1048576) or a size with a unit (512KiB, 10MB).
func parseSize(s string) (int64, bool) {
	num, mult := s, int64(1)
	for _, u := range sizeUnits {
		if t, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = strings.TrimSpace(t), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v <= 0 || v > math.MaxInt64/mult {
		return 0, false
	}
	return v * mult, true
}

// list calls each for every item of a sequence (a scalar counts as a one-item list).
func (d *decoder) list(n *yaml.Node, path string, each func(i int, v *yaml.Node, path string)) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind == yaml.ScalarNode {
		each(0, n, path)
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, "want a list, got %s", kindName(n))
		return
	}
	for i, v := range n.Content {
		each(i, resolve(v), fmt.Sprintf("%s[%d]", path, i))
	}
}

func (d *decoder) setStrings(dst *[]string, nodes *[]*yaml.Node) field {
	return func(n *yaml.Node, path string) {
		d.list(n, path, func(_ int, v *yaml.Node, p string) {
			if s, ok := d.str(v, p); ok {
				*dst = append(*dst, s)
				if nodes != nil {
					*nodes = append(*nodes, v)
				}
			}
		})
	}
}

func (d *decoder) setPrefixes(dst *[]netip.Prefix) field {
	return func(n *yaml.Node, path string) {
		d.list(n, path, func(_ int, v *yaml.Node, p string) {
			s, ok := d.str(v, p)
			if !ok {
				return
			}
			if pf, err := netip.ParsePrefix(s); err == nil {
				*dst = append(*dst, pf.Masked())
				return
			}
			if a, err := netip.ParseAddr(s); err == nil {
				*dst = append(*dst, netip.PrefixFrom(a, a.BitLen()))
				return
			}
			d.errorf(v, p, "invalid address %q: want an IP or a CIDR such as 10.0.0.0/8", s)
		})
	}
}

// setListen accepts host:port and :port.
func (d *decoder) setListen(dst *string) field {
	return func(n *yaml.Node, path string) {
		s, ok := d.str(n, path)
		if !ok {
			return
		}
		_, port, err := net.SplitHostPort(s)
		if err == nil {
			_, err = strconv.ParseUint(port, 10, 16)
		}
		if err != nil {
			d.errorf(n, path, "invalid listen address %q: want host:port or :port", s)
			return
		}
		*dst = s
	}
}

// setHTTPURL accepts absolute http and https URLs.
func (d *decoder) setHTTPURL(dst *URL) field {
	return func(n *yaml.Node, path string) {
		s, ok := d.str(n, path)
		if !ok {
			return
		}
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			d.errorf(n, path, "invalid URL %s: want an absolute http:// or https:// URL", webhook.RedactURL(s))
			return
		}
		*dst = URL{raw: s, u: u}
	}
}

// exprProblem reports an expression error at its position inside the YAML scalar.
func (d *decoder) exprProblem(n *yaml.Node, path string, err error) {
	ce, ok := err.(*rules.CompileError)
	if ok {
		err = ce.Err // path already says where: not "route 5: when: ..."
	}
	if !ok || n == nil || ce.Line == 0 {
		d.errorf(n, path, "%v", err)
		return
	}
	line, col := d.exprPosition(n, ce.Line, ce.Column)
	d.probs = append(d.probs, Problem{File: d.file, Line: line, Column: col, Path: path, Message: err.Error()})
}

// exprAt reports a problem at line:col (1-based) inside the expression that the YAML
// scalar n holds, or at n itself when line is 0.
func (d *decoder) exprAt(n *yaml.Node, path string, line, col int, warning bool, msg string) {
	p := Problem{File: d.file, Path: path, Message: msg, Warning: warning}
	switch {
	case n != nil && line > 0:
		p.Line, p.Column = d.exprPosition(n, line, col)
	case n != nil:
		p.Line, p.Column = n.Line, n.Column
	}
	d.probs = append(d.probs, p)
}

// exprPosition maps line:col, 1-based inside the expression that the YAML scalar n holds,
// to a position in the file, whatever the scalar's style.
func (d *decoder) exprPosition(n *yaml.Node, exprLine, exprCol int) (line, col int) {
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		// n is the | or > indicator; the text starts on the next line, at the block's
		// indentation (exact for literal blocks; a folded block's lines are joined).
		return n.Line + exprLine, d.blockIndent(n.Line) + exprCol
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		line, col = n.Line+exprLine-1, n.Column+exprCol
		if c, ok := d.quotedColumn(n, exprCol); ok && exprLine == 1 {
			col = c
		}
		return line, col
	}
	return n.Line + exprLine - 1, n.Column + exprCol - 1
}

// quotedColumn maps col, 1-based in the value of the quoted scalar n, to a column of the
// file, stepping over the escapes before it: \" \\ \x41 \u00e9 in double quotes, a doubled
// quote in single quotes. It looks at the scalar's first line only.
func (d *decoder) quotedColumn(n *yaml.Node, col int) (int, bool) {
	lines := strings.Split(string(d.src), "\n")
	if n.Line < 1 || n.Line > len(lines) {
		return 0, false
	}
	r := []rune(lines[n.Line-1]) // yaml.v3 columns count characters, as expr's do
	i := n.Column                // the character after the opening quote
	for range col - 1 {
		switch {
		case n.Style == yaml.DoubleQuotedStyle && i+1 < len(r) && r[i] == '\\':
			i += 2 + map[rune]int{'x': 2, 'u': 4, 'U': 8}[r[i+1]]
		case n.Style == yaml.SingleQuotedStyle && i+1 < len(r) && r[i] == '\'' && r[i+1] == '\'':
			i += 2
		default:
			i++
		}
	}
	if i >= len(r) {
		return 0, false
	}
	return i + 1, true
}

// blockIndent returns the indentation of the first non-blank line after line (1-based):
// the column before a block scalar's text.
func (d *decoder) blockIndent(line int) int {
	lines := strings.Split(string(d.src), "\n")
	for i := line; i < len(lines); i++ {
		if text := strings.TrimLeft(lines[i], " "); strings.TrimSpace(text) != "" {
			return len(lines[i]) - len(text)
		}
	}
	return 0
}
