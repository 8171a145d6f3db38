package main

import (
	"testing"

	"github.com/lanyard/lanyard/internal/pgtest"
)

// TestMain stops the PostgreSQL server the store tests start (pgtest),
// if any did.
func TestMain(m *testing.M) { pgtest.Main(m) }
