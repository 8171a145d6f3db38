//go:build !unix

package realtools

// lockFile is a no-op where flock is unavailable; the in-process mutex still
// serialises builds within one test binary.
func lockFile(string) (func(), error) { return func() {}, nil }
