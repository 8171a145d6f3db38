//go:build !race

package store

// yearHostsDefault is the fleet of TestTidyBoundsAYear.
const yearHostsDefault = 1000
