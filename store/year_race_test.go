//go:build race

package store

// yearHostsDefault is the fleet of TestTidyBoundsAYear under the race
// detector (ten times slower): the race detector checks tidy running
// between concurrent writers, the bound is checked without it.
const yearHostsDefault = 50
