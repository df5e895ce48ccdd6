package config

import (
	"slices"
	"testing"
)

func TestExpand(t *testing.T) {
	env := mapEnv(map[string]string{"A": "1", "B": "2", "EMPTY": "", "REF": "${B}", "DOLLAR": "$$"})
	tests := []struct {
		in, want, err string
	}{
		{in: "plain", want: "plain"},
		{in: "${A}", want: "1"},
		{in: "x${A}y${B}z${A}", want: "x1y2z1"},
		{in: "${A:-default}", want: "1"},
		{in: "${UNSET:-default}", want: "default"},
		{in: "${UNSET:-}", want: ""},
		{in: "${UNSET:-a:-b c}", want: "a:-b c"},
		{in: "${EMPTY:-default}", want: "default"}, // as in the shell: set but empty
		{in: "${EMPTY}", want: ""},
		{in: "${REF}", want: "${B}"}, // values are not expanded again
		{in: "${DOLLAR}", want: "$$"},
		{in: "$$", want: "$"},
		{in: "$$$$", want: "$$"},
		{in: "$${A}", want: "${A}"},
		{in: "price: $5", want: "price: $5"},
		{in: "a$", want: "a$"},
		{in: "$A", want: "$A"}, // only the braced form expands
		{in: "${_x9}", err: "environment variable _x9 is not set (use ${_x9:-default} for a default)"},
		{in: "before ${UNSET} after", err: "environment variable UNSET is not set (use ${UNSET:-default} for a default)"},
		{in: "${A", err: "unterminated ${ (write $$ for a literal $)"},
		{in: "${}", err: "invalid variable name in ${...}: want letters, digits and _ (write $$ for a literal $)"},
		{in: "${9A}", err: "invalid variable name in ${...}: want letters, digits and _ (write $$ for a literal $)"},
		{in: "${A-default}", err: "invalid variable name in ${...}: want letters, digits and _ (write $$ for a literal $)"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := expand(tt.in, env)
			switch {
			case tt.err != "":
				if err == nil || err.Error() != tt.err {
					t.Errorf("error %v, want %q", err, tt.err)
				}
			case err != nil:
				t.Errorf("error %v", err)
			case got != tt.want:
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestParseExpandsEnv checks that Parse expands every kind of string through the env
// function it is given, and looks up nothing else.
func TestParseExpandsEnv(t *testing.T) {
	yaml := `
admin:
  token: ${ADMIN_TOKEN}
tencent:
  apps:
    - sdkappid: ${APP_ID:-1400000000}
      token: "${TIM_TOKEN:-}"
  max_clock_skew: ${SKEW:-45s}
destinations:
  a:
    url: "http://${HOST}:${PORT:-8000}/im?k=$$"
    headers: {X-Price: "$$5", X-Fallback: "${EMPTY:-fallback}", X-Empty: "${EMPTY}"}
    concurrency: ${CONCURRENCY}
routes:
  - name: ${ROUTE:-r}
    commands: [C2C.CallbackAfterSendMsg]
    when: From_Account == "${VIP:-bob}"
    to: [a]
`
	env := map[string]string{"ADMIN_TOKEN": "t", "HOST": "app.internal", "EMPTY": "", "CONCURRENCY": "3", "VIP": "alice"}
	var asked []string
	c, probs := Parse("f.yaml", []byte(yaml), func(name string) (string, bool) {
		asked = append(asked, name)
		v, ok := env[name]
		return v, ok
	})
	if c == nil || len(probs) > 0 {
		t.Fatalf("problems:\n%v", probs)
	}
	a := c.Destination("a")
	checks := []struct{ what, got, want string }{
		{"admin.token", c.Admin.Token.Value(), "t"},
		{"sdkappid", c.Tencent.Apps[0].SdkAppID, "1400000000"},
		{"app token", c.Tencent.Apps[0].Token.Value(), ""},
		{"max_clock_skew", c.Tencent.MaxClockSkew.String(), "45s"},
		{"url", a.URL.Value(), "http://app.internal:8000/im?k=$"},
		{"X-Price", a.Headers["X-Price"].Value(), "$5"},
		{"X-Fallback", a.Headers["X-Fallback"].Value(), "fallback"},
		{"X-Empty", a.Headers["X-Empty"].Value(), ""},
		{"route name", c.Routes[0].Name, "r"},
		{"when", c.Routes[0].When, `From_Account == "alice"`},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %q, want %q", ch.what, ch.got, ch.want)
		}
	}
	if a.Concurrency != 3 {
		t.Errorf("concurrency = %d, want 3", a.Concurrency)
	}
	slices.Sort(asked)
	want := []string{"ADMIN_TOKEN", "APP_ID", "CONCURRENCY", "EMPTY", "EMPTY", "HOST", "PORT", "ROUTE", "SKEW", "TIM_TOKEN", "VIP"}
	if !slices.Equal(asked, want) {
		t.Errorf("looked up %v, want %v", asked, want)
	}
}
