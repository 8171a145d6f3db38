//go:build race

package replicas_test

// raceBuild: the tests run under the race detector. The tests that spawn
// `lanyard serve` binaries skip then: the child binary is not race-built,
// so the pass would check nothing the plain pass does not.
const raceBuild = true
