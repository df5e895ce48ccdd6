package fanouttest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The side of Tencent IM in a test: the queries and bodies it sends, its Sign, and the
// answer it wants. Written from Tencent's documentation, not with Fanout's own code, so
// that a test of Fanout's checks does not sign with what it checks.

// App is the SdkAppid that the tests' configs accept.
const App = "1400000000"

// OKAnswer is the answer Tencent IM expects for an accepted callback.
const OKAnswer = `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}`

// Sign is Tencent IM's callback Sign: the lowercase hex SHA-256 of token followed by
// RequestTime.
func Sign(token, requestTime string) string {
	sum := sha256.Sum256([]byte(token + requestTime))
	return hex.EncodeToString(sum[:])
}

// CallbackQuery is the query Tencent IM adds to a callback of app and command, for an app
// without a callback token (no Sign).
func CallbackQuery(app, command string) string {
	return "SdkAppid=" + app + "&CallbackCommand=" + command + "&contenttype=json&ClientIP=203.0.113.9&OptPlatform=RESTAPI"
}

// SignedCallbackQuery is CallbackQuery for an app with a callback token, sent at at: with
// RequestTime and its Sign.
func SignedCallbackQuery(app, command, token string, at time.Time) string {
	rt := strconv.FormatInt(at.Unix(), 10)
	return CallbackQuery(app, command) + "&RequestTime=" + rt + "&Sign=" + url.QueryEscape(Sign(token, rt))
}

// CallbackAnswer is what a gateway answered to a callback.
type CallbackAnswer struct {
	Status int // 0 when no answer came
	Body   []byte
}

// OK reports whether the callback was accepted: 200 with OKAnswer.
func (a CallbackAnswer) OK() bool { return a.Status == http.StatusOK && string(a.Body) == OKAnswer }

// PostCallback POSTs a callback body to http://addr/callback?query, as Tencent IM does.
func PostCallback(addr, query string, body []byte) CallbackAnswer {
	status, answer := Do(http.MethodPost, "http://"+addr+"/callback?"+query, "", body)
	return CallbackAnswer{Status: status, Body: answer}
}

// C2CMessage is a C2C.CallbackAfterSendMsg body, from jared to Jonh, whose MsgKey is key:
// one callback that a test can follow to its receivers (Receiver.Delivered).
func C2CMessage(key string) []byte {
	return fmt.Appendf(nil, `{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"jared","To_Account":"Jonh",`+
		`"MsgKey":%q,"SendMsgResult":0,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hi"}}]}`, key)
}

// MsgKey is the MsgKey of a callback body, "" when it has none.
func MsgKey(body []byte) string {
	var m struct{ MsgKey string }
	_ = json.Unmarshal(body, &m)
	return m.MsgKey
}

// StandardWebhookSignature is the Standard Webhooks signature ("v1,BASE64") of a delivery
// with secret (whsec_BASE64), computed from the specification rather than with Fanout's
// delivery package.
func StandardWebhookSignature(secret, id, timestamp string, body []byte) (string, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return "", fmt.Errorf("secret %q: %w", secret, err)
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.", id, timestamp)
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}
