package revocation

import (
	"errors"
	"strings"
	"testing"
)

func TestParseReason(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr bool
	}{
		{"", ReasonUnspecified, false},
		{"unspecified", 0, false},
		{"keyCompromise", 1, false},
		{"key-compromise", 1, false},
		{"KEY_COMPROMISE", 1, false},
		{"1", 1, false},
		{" superseded ", 4, false},
		{"affiliationChanged", 3, false},
		{"cessationOfOperation", 5, false},
		{"9", 9, false},
		{"privilegeWithdrawn", 9, false},
		{"cACompromise", 0, true},
		{"2", 0, true},
		{"certificateHold", 0, true},
		{"6", 0, true},
		{"7", 0, true},
		{"removeFromCRL", 0, true},
		{"aACompromise", 0, true},
		{"11", 0, true},
		{"-1", 0, true},
		{"stolen", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseReason(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrUnknownReason) {
					t.Fatalf("ParseReason(%q) = %d, %v; want ErrUnknownReason", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseReason(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
			if back, err := ParseReason(ReasonName(got)); err != nil || back != got {
				t.Fatalf("ParseReason(ReasonName(%d)) = %d, %v", got, back, err)
			}
		})
	}
}

func TestReasonName(t *testing.T) {
	tests := map[int]string{
		0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged",
		4: "superseded", 5: "cessationOfOperation", 6: "certificateHold", 7: "reason(7)",
		8: "removeFromCRL", 9: "privilegeWithdrawn", 10: "aACompromise", 42: "reason(42)",
	}
	for code, want := range tests {
		if got := ReasonName(code); got != want {
			t.Errorf("ReasonName(%d) = %q, want %q", code, got, want)
		}
	}
}

func TestUnknownReasonMessageNamesAllowedCodes(t *testing.T) {
	err := checkReason(ReasonCACompromise)
	if err == nil || !errors.Is(err, ErrUnknownReason) {
		t.Fatalf("checkReason(2) = %v", err)
	}
	for _, want := range []string{"cACompromise (2) is not allowed", "keyCompromise (1)", "privilegeWithdrawn (9)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
}
