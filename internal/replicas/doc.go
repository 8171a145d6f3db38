// Package replicas holds the tests of several lanyard servers on one
// PostgreSQL database (issue 11): its only content is its tests.
package replicas
