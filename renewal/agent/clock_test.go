package agent

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lanyard/lanyard/renewal/hostdir"
	"github.com/lanyard/lanyard/renewal/schedule"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func TestPickMoment(t *testing.T) {
	lowest := func(int64) int64 { return 0 }
	highest := func(n int64) int64 { return n - 1 }
	half := func(n int64) int64 { return n / 2 }
	w := schedule.Window{Start: t0.Add(time.Hour), End: t0.Add(3 * time.Hour)}
	tests := []struct {
		name string
		w    schedule.Window
		now  time.Time
		rnd  func(int64) int64
		want time.Time
	}{
		{"before window, lowest draw", w, t0, lowest, t0.Add(time.Hour)},
		{"before window, highest draw", w, t0, highest, t0.Add(3*time.Hour - 1)},
		{"before window, middle", w, t0, half, t0.Add(2 * time.Hour)},
		{"inside window: never before now", w, t0.Add(2 * time.Hour), lowest, t0.Add(2 * time.Hour)},
		{"inside window: rest of window", w, t0.Add(2 * time.Hour), half, t0.Add(150 * time.Minute)},
		{"window past: now", w, t0.Add(5 * time.Hour), highest, t0.Add(5 * time.Hour)},
		{"window ends now: now", w, t0.Add(3 * time.Hour), highest, t0.Add(3 * time.Hour)},
		{"empty window: now", schedule.Window{Start: t0.Add(time.Hour), End: t0.Add(time.Hour)}, t0, highest, t0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PickMoment(tt.w, tt.now, tt.rnd); !got.Equal(tt.want) {
				t.Errorf("PickMoment = %s, want %s", got, tt.want)
			}
		})
	}
	t.Run("uniform inside window", func(t *testing.T) {
		var buckets [4]int
		for range 4000 {
			m := PickMoment(w, t0, nil)
			if m.Before(w.Start) || !m.Before(w.End) {
				t.Fatalf("moment %s outside [%s, %s)", m, w.Start, w.End)
			}
			buckets[int(m.Sub(w.Start)/(30*time.Minute))]++
		}
		for i, n := range buckets {
			if n < 800 || n > 1200 {
				t.Errorf("bucket %d has %d of 4000 draws; want about 1000 (%v)", i, n, buckets)
			}
		}
	})
}

func TestBackoff(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 10 * time.Minute}
	tests := []struct {
		attempt int
		want    time.Duration
	}{
		{0, time.Second}, {1, 2 * time.Second}, {2, 4 * time.Second}, {5, 32 * time.Second},
		{9, 512 * time.Second}, {10, 10 * time.Minute}, {11, 10 * time.Minute}, {1000, 10 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint("attempt ", tt.attempt), func(t *testing.T) {
			if got := b.Cap(tt.attempt); got != tt.want {
				t.Errorf("Cap(%d) = %s, want %s", tt.attempt, got, tt.want)
			}
			if got := b.Delay(tt.attempt, func(n int64) int64 { return n - 1 }); got != tt.want {
				t.Errorf("Delay(%d) with the highest draw = %s, want the cap %s", tt.attempt, got, tt.want)
			}
			if got := b.Delay(tt.attempt, func(int64) int64 { return 0 }); got != 0 {
				t.Errorf("Delay(%d) with the lowest draw = %s, want 0 (full jitter)", tt.attempt, got)
			}
		})
	}
	t.Run("defaults", func(t *testing.T) {
		if got := (Backoff{}).Cap(0); got != DefaultBackoffInitial {
			t.Errorf("Cap(0) = %s", got)
		}
		if got := (Backoff{}).Cap(64); got != DefaultBackoffMax {
			t.Errorf("Cap(64) = %s", got)
		}
	})
}

func TestIsFinal(t *testing.T) {
	rpc := func(code connect.Code) error {
		return classifyRPC(context.Background(), "renew", connect.NewError(code, errors.New("x")))
	}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"unauthenticated", rpc(connect.CodeUnauthenticated), true},
		{"permission denied (revoked)", rpc(connect.CodePermissionDenied), true},
		{"invalid argument", rpc(connect.CodeInvalidArgument), true},
		{"failed precondition (token used)", rpc(connect.CodeFailedPrecondition), true},
		{"unavailable", rpc(connect.CodeUnavailable), false},
		{"resource exhausted", rpc(connect.CodeResourceExhausted), false},
		{"deadline exceeded", rpc(connect.CodeDeadlineExceeded), false},
		{"internal", rpc(connect.CodeInternal), false},
		{"network error", classifyRPC(context.Background(), "renew", errors.New("dial tcp: connection refused")), false},
		{"expired", fmt.Errorf("renew: %w", ErrExpired), true},
		{"key type change", fmt.Errorf("renew: %w", ErrKeyTypeChange), true},
		{"not enrolled", fmt.Errorf("renew: %w", ErrNotEnrolled), true},
		{"hostdir mismatch", fmt.Errorf("renew: %w", hostdir.ErrMismatch), true},
		{"write failed", fmt.Errorf("renew: %w", ErrWrite), false},
		{"cancelled", context.Canceled, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsFinal(tt.err); got != tt.want {
				t.Errorf("IsFinal(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
	if err := rpc(connect.CodePermissionDenied); !errors.Is(err, ErrRejected) || connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("a refused call must wrap both ErrRejected and the Connect error: %v", err)
	}
	if err := rpc(connect.CodeUnavailable); !errors.Is(err, ErrUnavailable) {
		t.Errorf("an unavailable CA must wrap ErrUnavailable: %v", err)
	}
}
