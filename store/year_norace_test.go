//go:build !race

package store

// yearHostsDefault is the fleet of TestTidyBoundsAYear in make test: 200
// hosts (110,000 renewals) show the bound in a fraction of CI's time; the
// issue's 1,000 hosts run with LANYARD_TIDY_YEAR_HOSTS=1000.
const yearHostsDefault = 200
