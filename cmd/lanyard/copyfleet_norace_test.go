//go:build !race

package main

// copyFleet is TestStoreCopyToPostgres's fleet in the plain pass: some
// 900 records of every kind but sessions (certificates with lineage and
// revocations, used and unused tokens, audit events), cheap in make test.
const copyFleet = 150
