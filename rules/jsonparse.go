package rules

import (
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// decodeValid decodes JSON that json.Valid accepted into the values encoding/json gives
// (map[string]any, []any, string, bool, nil) except numbers: integers that fit are int64,
// others float64. It is the hot path of every callback: one pass, no reflection, no
// json.Number to convert afterwards. Its results are checked against encoding/json's by
// a fuzz test.
func decodeValid(b []byte) any {
	d := jsonDecoder{b: b}
	return d.value()
}

type jsonDecoder struct {
	b []byte
	i int
}

func (d *jsonDecoder) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *jsonDecoder) value() any {
	d.space()
	switch c := d.b[d.i]; c {
	case '{':
		d.i++
		m := make(map[string]any)
		d.space()
		if d.b[d.i] == '}' {
			d.i++
			return m
		}
		for {
			d.space()
			k := d.str()
			d.space()
			d.i++ // ':'
			m[k] = d.value()
			d.space()
			if d.b[d.i] == '}' {
				d.i++
				return m
			}
			d.i++ // ','
		}
	case '[':
		d.i++
		a := []any{}
		d.space()
		if d.b[d.i] == ']' {
			d.i++
			return a
		}
		for {
			a = append(a, d.value())
			d.space()
			if d.b[d.i] == ']' {
				d.i++
				return a
			}
			d.i++ // ','
		}
	case '"':
		return d.str()
	case 't':
		d.i += 4
		return true
	case 'f':
		d.i += 5
		return false
	case 'n':
		d.i += 4
		return nil
	default:
		return d.number()
	}
}

func (d *jsonDecoder) number() any {
	start, float := d.i, false
	for ; d.i < len(d.b); d.i++ {
		switch d.b[d.i] {
		case '.', 'e', 'E':
			float = true
		case '-', '+', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		default:
			goto done
		}
	}
done:
	s := string(d.b[start:d.i])
	if !float {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return math.NaN() // out of float64's range
	}
	return f
}

// str reads a string at d.i (its opening quote).
func (d *jsonDecoder) str() string {
	d.i++
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		if c == '"' {
			raw := d.b[start:d.i]
			d.i++
			if utf8.Valid(raw) {
				return string(raw)
			}
			return unquoteSlow(raw)
		}
		if c == '\\' {
			break
		}
		d.i++
	}
	// Escapes: find the closing quote, then decode.
	for d.i < len(d.b) {
		c := d.b[d.i]
		if c == '\\' {
			d.i += 2
			continue
		}
		if c == '"' {
			break
		}
		d.i++
	}
	raw := d.b[start:d.i]
	d.i++
	return unquoteSlow(raw)
}

// unquoteSlow decodes a string body with escapes or invalid UTF-8, as encoding/json does:
// each invalid byte becomes U+FFFD, and so does an unpaired surrogate.
func unquoteSlow(s []byte) string {
	out := make([]byte, 0, len(s)+2*utf8.UTFMax)
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			i++
			switch e := s[i]; e {
			case '"', '\\', '/':
				out = append(out, e)
				i++
			case 'b':
				out = append(out, '\b')
				i++
			case 'f':
				out = append(out, '\f')
				i++
			case 'n':
				out = append(out, '\n')
				i++
			case 'r':
				out = append(out, '\r')
				i++
			case 't':
				out = append(out, '\t')
				i++
			case 'u':
				r := hex4(s[i+1 : i+5])
				i += 5
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
						r2 = hex4(s[i+2 : i+6])
					}
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						i += 6
						r = dec
					} else {
						r = utf8.RuneError
					}
				}
				out = utf8.AppendRune(out, r)
			}
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, size := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && size == 1 {
				out = utf8.AppendRune(out, utf8.RuneError)
			} else {
				out = append(out, s[i:i+size]...)
			}
			i += size
		}
	}
	return string(out)
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}
