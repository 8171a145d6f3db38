//go:build !unix

package hostdir

import (
	"fmt"
	"os"
)

// lockFile creates path and returns a no-op release: there is no flock(2)
// here, so only the in-process mutex serialises writers.
func lockFile(path string, wait bool) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	return func() { _ = f.Close() }, nil
}
