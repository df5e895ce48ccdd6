package tencentim

import (
	"crypto/sha256"
	"encoding/hex"
)

// Sign is Tencent's callback signature: lower-case hex of sha256(token + requestTime).
func Sign(token, requestTime string) string {
	sum := sha256.Sum256([]byte(token + requestTime))
	return hex.EncodeToString(sum[:])
}
