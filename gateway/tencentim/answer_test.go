package tencentim

import (
	"encoding/json"
	"testing"
)

// answer is the reply body Tencent reads.
type answer struct {
	ActionStatus string
	ErrorCode    *int // a pointer, so a missing ErrorCode is not read as 0
	ErrorInfo    *string
}

func decodeAnswer(t *testing.T, body []byte) answer {
	t.Helper()
	var a answer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("not valid JSON: %v\n%s", err, body)
	}
	if a.ErrorCode == nil || a.ErrorInfo == nil {
		t.Fatalf("ErrorCode or ErrorInfo missing: %s", body)
	}
	return a
}

func TestOK(t *testing.T) {
	const want = `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}`
	if string(OK) != want {
		t.Errorf("OK = %s, want %s", OK, want)
	}
}

func TestFail(t *testing.T) {
	tests := []struct {
		name, info, wantInfo string
	}{
		{"plain", "SdkAppid is missing from the query", "SdkAppid is missing from the query"},
		{"empty", "", ""},
		{"quotes and backslash", `SdkAppid "14\00" is not configured`, `SdkAppid "14\00" is not configured`},
		{"newlines and tab", "line one\nline two\r\n\tend", "line one\nline two\r\n\tend"},
		{"control characters", "nul\x00bell\x07", "nul\x00bell\x07"},
		{"HTML characters", "<script>&</script>", "<script>&</script>"},
		{"unicode", "签名错误 ✓", "签名错误 ✓"},
		{"invalid UTF-8 is replaced", "bad\xffbyte", "bad\uFFFDbyte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := Fail(tt.info)
			a := decodeAnswer(t, body)
			if a.ActionStatus != "FAIL" || *a.ErrorCode != 1 || *a.ErrorInfo != tt.wantInfo {
				t.Errorf("Fail(%q) = %s, decodes to %q %d %q", tt.info, body, a.ActionStatus, *a.ErrorCode, *a.ErrorInfo)
			}
		})
	}
	t.Run("exact bytes", func(t *testing.T) {
		const want = `{"ActionStatus":"FAIL","ErrorCode":1,"ErrorInfo":"say \"hi\"\n"}`
		if got := string(Fail("say \"hi\"\n")); got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})
}

func TestDecision(t *testing.T) {
	tests := []struct {
		name string
		code int
		want string
	}{
		{"allow", DecisionAllow, `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}`},
		{"deny", DecisionDeny, `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":1}`},
		{"drop", DecisionDrop, `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":2}`},
		{"custom business code", 120001, `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":120001}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := Decision(tt.code)
			if string(body) != tt.want {
				t.Errorf("Decision(%d) = %s, want %s", tt.code, body, tt.want)
			}
			if a := decodeAnswer(t, body); a.ActionStatus != "OK" || *a.ErrorCode != tt.code {
				t.Errorf("Decision(%d) decodes to %+v", tt.code, a)
			}
		})
	}
}

func TestIsDecision(t *testing.T) {
	for body, want := range map[string]bool{
		`{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}`: true,
		`{"ErrorCode":1}`: true,
		"  \n{\"ErrorCode\": 120001, \"ErrorInfo\": \"blocked\", \"MsgBody\": []}\n ": true,
		`{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":"1"}`:                        false,
		`{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":null}`:                       false,
		`{"ActionStatus":"OK","ErrorInfo":""}`:                                        false,
		`{"ErrorCode":1.5}`:                                                           false,
		`[{"ErrorCode":0}]`:                                                           false,
		`{"ErrorCode":0} {"ErrorCode":1}`:                                             false,
		`ok`:                                                                          false,
		``:                                                                            false,
	} {
		if got := IsDecision([]byte(body)); got != want {
			t.Errorf("IsDecision(%q) = %v, want %v", body, got, want)
		}
	}
	for _, code := range []int{DecisionAllow, DecisionDeny, DecisionDrop} {
		if !IsDecision(Decision(code)) {
			t.Errorf("IsDecision(Decision(%d)) = false", code)
		}
	}
}
