package tencentim

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
)

// EventID identifies a callback for de-duplication: the same SdkAppid, CallbackCommand and
// raw body give the same id, so a callback Tencent retries is delivered once. Each part is
// prefixed with its length, so no two different triples hash the same input
// ("1","2ab" differs from "12","ab"). The SHA-256 is cut to 128 bits (32 hex digits), far
// more than needed to avoid collisions within a de-duplication window, and short enough
// for a NATS message id and a log field.
func EventID(sdkAppID, command string, body []byte) string {
	h := sha256.New()
	var n [8]byte
	for _, part := range [][]byte{[]byte(sdkAppID), []byte(command), body} {
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}
