// Package crashtest proves lanyard's crash safety: a real `lanyard serve`
// process under concurrent enrollment, renewal and revocation load is
// killed with SIGKILL at random moments and restarted, and every promise
// the CA makes is checked after each restart (see crash_test.go). It holds
// no code but its tests.
package crashtest
