package delivery

import (
	"strings"
	"testing"
	"time"

	"github.com/fanout-gw/fanout/gateway/webhook"
)

func TestNewDestination(t *testing.T) {
	valid := Destination{
		Name:           "audit",
		URL:            "https://user:pa55word@audit.example.com/events?access_token=t0ken#frag",
		Headers:        map[string]string{"Authorization": "Bearer s3cret-header"},
		SigningSecrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
		Timeout:        10 * time.Second,
		Policy:         configPolicy,
	}
	tests := []struct {
		name string
		edit func(d *Destination)
		want []string // substrings of the error, in order; nil = valid
	}{
		{name: "valid", edit: func(*Destination) {}},
		{name: "no secrets", edit: func(d *Destination) { d.SigningSecrets = nil }},
		{
			name: "bad secrets named by index",
			edit: func(d *Destination) {
				d.SigningSecrets = []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not*base64", "whsec_"}
			},
			want: []string{
				`destination "audit": `,
				`signing_secret[1]: not a Standard Webhooks secret: want whsec_`,
				`signing_secret[2]: not a Standard Webhooks secret: the part after whsec_ is not valid base64`,
				`signing_secret[3]: signing secret too short: 0 bytes of key`,
			},
		},
		{
			name: "every problem reported",
			edit: func(d *Destination) {
				d.Name = ""
				d.URL = "ftp://audit.example.com/?access_token=t0ken"
				d.Timeout = 0
				d.Policy.MaxAttempts = 0
			},
			want: []string{
				`destination "": name: invalid destination name: use letters, digits, - and _`,
				"url: must be an absolute http:// or https:// URL",
				"timeout 0s: must be positive",
				"retry: max_attempts 0: must be at least 1",
			},
		},
		{
			name: "unparsable url",
			edit: func(d *Destination) { d.URL = "https://audit.example.com/%zz?access_token=t0ken" },
			want: []string{`url: invalid URL escape "%zz"`},
		},
		{name: "relative url", edit: func(d *Destination) { d.URL = "/events" }, want: []string{"url: must be an absolute"}},
		{
			name: "bad headers",
			edit: func(d *Destination) {
				d.Headers = map[string]string{
					"Authorization":     "Bearer s3cret-header\r\nX-Injected: 1",
					"Bad Name":          "x",
					"webhook-signature": "v1,forged",
					"Fanout-Attempt":    "7",
				}
			},
			want: []string{
				`header "Authorization": the value holds a control character`,
				`header "Bad Name": invalid header name`,
				`header "Fanout-Attempt": set by Fanout on every request, cannot be configured`,
				`header "webhook-signature": set by Fanout on every request, cannot be configured`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := valid
			d.Headers = map[string]string{"Authorization": "Bearer s3cret-header"}
			tt.edit(&d)
			got, err := NewDestination(d)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("NewDestination: %v", err)
				}
				if len(got.keys) != len(d.SigningSecrets) {
					t.Errorf("decoded %d keys, want %d", len(got.keys), len(d.SigningSecrets))
				}
				return
			}
			if err == nil {
				t.Fatal("NewDestination: no error")
			}
			msg, at := err.Error(), 0
			for _, w := range tt.want {
				i := strings.Index(msg[at:], w)
				if i < 0 {
					t.Fatalf("error %q\ndoes not have %q (after offset %d)", msg, w, at)
				}
				at += i + len(w)
			}
			for _, secret := range []string{"t0ken", "pa55word", "s3cret-header", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "forged"} {
				if strings.Contains(msg, secret) {
					t.Errorf("error %q shows the secret %q", msg, secret)
				}
			}
		})
	}
}

func TestRedactedURL(t *testing.T) {
	d := testDestination(t, "https://user:pa55word@audit.example.com:8443/events/in?access_token=t0ken#frag", nil)
	if got, want := d.RedactedURL(), "https://user:<secret>@audit.example.com:8443/events/in?access_token=<secret>#frag"; got != want {
		t.Errorf("RedactedURL = %q, want %q", got, want)
	}
}

// TestSignatureTestVector checks the signature against the one published with the Standard
// Webhooks reference implementations (also Svix's libraries' test), so that a receiver's
// off-the-shelf library accepts ours: a round trip against our own verifier would pass with
// the wrong delimiter, alphabet or key decoding just as well.
func TestSignatureTestVector(t *testing.T) {
	key, err := webhook.DecodeSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := signature([][]byte{key}, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Errorf("signature = %q, want %q", got, want)
	}
}
