package schedule

import (
	"testing"
	"time"
)

func TestScheduled(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		life       time.Duration
		start, end time.Duration // from NotBefore
	}{
		{"24h: centred at half", 24 * time.Hour, 12*time.Hour - 72*time.Minute, 12*time.Hour + 72*time.Minute},
		{"5m: centred at half", 5 * time.Minute, 150*time.Second - 15*time.Second, 150*time.Second + 15*time.Second},
		{"30d: centred at two thirds", 30 * 24 * time.Hour, 20*24*time.Hour - 36*time.Hour, 20*24*time.Hour + 36*time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := Scheduled(t0, t0.Add(tc.life))
			if !w.Start.Equal(t0.Add(tc.start)) || !w.End.Equal(t0.Add(tc.end)) || w.Reason != ReasonScheduled {
				t.Fatalf("window %s – %s (%s), want %s – %s", w.Start, w.End, w.Reason, t0.Add(tc.start), t0.Add(tc.end))
			}
			if !w.End.Before(t0.Add(tc.life)) {
				t.Fatal("window ends after the certificate expires")
			}
		})
	}
}
