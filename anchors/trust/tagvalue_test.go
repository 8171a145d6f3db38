package trust

import (
	"regexp"
	"strings"
	"testing"
)

// stsTagValuePattern is STS's documented session-tag value pattern, kept
// here only as the oracle for validTagValue.
var stsTagValuePattern = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]{0,256}$`)

func TestValidTagValueMatchesSTSPattern(t *testing.T) {
	for _, v := range []string{
		"", "host1.covalent.example.net", "a b", "ünïcödé", "日本", "x=y+z@w:/_-.",
		"bad*star", "new\nline", "tab\t", "\xff", "\u00a0nbsp", "٣", "emoji😀",
		strings.Repeat("a", 256), strings.Repeat("a", 257), strings.Repeat("é", 256), strings.Repeat("é", 257),
	} {
		if got, want := validTagValue(v), stsTagValuePattern.MatchString(v); got != want {
			t.Errorf("validTagValue(%q) = %v, the STS pattern says %v", v, got, want)
		}
	}
}

func FuzzValidTagValue(f *testing.F) {
	for _, s := range []string{"", "host1.example.net", "a*b", "\xff", strings.Repeat("é", 257)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if got, want := validTagValue(v), stsTagValuePattern.MatchString(v); got != want {
			t.Fatalf("validTagValue(%q) = %v, the STS pattern says %v", v, got, want)
		}
	})
}
