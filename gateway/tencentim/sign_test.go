package tencentim

import "testing"

func TestSign(t *testing.T) {
	tests := []struct {
		name, token, requestTime, want string
	}{
		// Tencent's published test vector (Webhook Overview, "Security Considerations").
		{"published vector", "xxxxyyyy", "1669872112", "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061"},
		// One version of Tencent's page prints Token=xxxyyy with the same hash; it does not match.
		{"doc typo token", "xxxyyy", "1669872112", "e78a85473bed2cdc8d6fa8c4d5a4ba4735fd64156e15a99516b9890293e135de"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Sign(tt.token, tt.requestTime); got != tt.want {
				t.Errorf("Sign(%q, %q) = %s, want %s", tt.token, tt.requestTime, got, tt.want)
			}
		})
	}
}
