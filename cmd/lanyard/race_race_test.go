//go:build race

package main

// raceBuild is true under the race detector. Tests that only drive child
// lanyard binaries skip then: the children are not race-built, so the
// -race pass adds nothing to what the plain pass checks.
const raceBuild = true
