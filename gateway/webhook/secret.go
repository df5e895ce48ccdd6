package webhook

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// MinSecretBytes is the shortest signing key accepted: 128 bits. `fanout secret` makes
// 32-byte keys.
const MinSecretBytes = 16

// DecodeSecret reads a Standard Webhooks signing secret, "whsec_" followed by the base64
// of the key, and returns the key: the HMAC-SHA256 key of webhook-signature. The error
// never shows the secret.
func DecodeSecret(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(s, "whsec_")
	if !ok {
		return nil, fmt.Errorf("not a Standard Webhooks secret: want whsec_ followed by base64 (make one with `fanout secret`)")
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("not a Standard Webhooks secret: the part after whsec_ is not valid base64")
	}
	if len(key) < MinSecretBytes {
		return nil, fmt.Errorf("signing secret too short: %d bytes of key, want at least %d (make one with `fanout secret`)", len(key), MinSecretBytes)
	}
	return key, nil
}
