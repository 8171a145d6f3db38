package main

import (
	"testing"

	"github.com/lanyard/lanyard/internal/pgtest"
	"github.com/lanyard/lanyard/internal/servetest"
)

// TestMain stops the PostgreSQL server the store tests start (pgtest),
// if any did, and removes the lanyard binary the end-to-end tests built.
func TestMain(m *testing.M) { pgtest.Main(m, servetest.RemoveBinary) }
