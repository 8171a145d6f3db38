//go:build race

package main

// copyFleet is TestStoreCopyToPostgres's fleet under the race detector
// (ten times slower): the race pass checks the copy's concurrency, the
// plain pass the volume.
const copyFleet = 40
