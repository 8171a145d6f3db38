package lanyardv1

import (
	"errors"
	"math/big"
	"testing"
)

func TestParseSerial(t *testing.T) {
	tests := []struct {
		in, want string
		err      bool
	}{
		{"1", "00000000000000000000000000000001", false},
		{" AB:CD ", "0000000000000000000000000000abcd", false},
		{"8000000000000000000000000000000000", "8000000000000000000000000000000000", false},
		{"0" + "8000000000000000000000000000000000", "008000000000000000000000000000000000", false},
		{"00" + "11111111111111111111111111111111", "0011111111111111111111111111111111", false},
		{"", "", true},
		{"xyz", "", true},
		{"1" + "0000000000000000000000000000000000000000", "", true}, // 41 digits
	}
	for _, tt := range tests {
		got, n, err := ParseSerial(tt.in)
		if tt.err {
			if !errors.Is(err, ErrBadSerial) {
				t.Errorf("ParseSerial(%q) = %q, %v; want ErrBadSerial", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSerial(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			continue
		}
		if back, _ := new(big.Int).SetString(tt.want, 16); n.Cmp(back) != 0 {
			t.Errorf("ParseSerial(%q) value %x", tt.in, n)
		}
		if FormatSerial(n) != got && len(got) == 32 {
			t.Errorf("FormatSerial(%x) = %q, ParseSerial gave %q", n, FormatSerial(n), got)
		}
	}
}
