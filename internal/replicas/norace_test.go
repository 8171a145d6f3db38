//go:build !race

package replicas_test

// raceBuild: the tests run under the race detector (see race_test.go).
const raceBuild = false
