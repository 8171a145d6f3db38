package migrations

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

// postgresFS holds the PostgreSQL schema as numbered, forward-only SQL
// files, NNNN_name.sql. A file is applied in one transaction together
// with its row in schema_migrations, so a failure leaves the database
// before it; files are never edited once released, a change is a new file.
//
//go:embed postgres/*.sql
var postgresFS embed.FS

// SQLMigration is one PostgreSQL schema step.
type SQLMigration struct {
	Version int
	Name    string
	SQL     string
}

// Postgres returns the PostgreSQL migrations in order. It panics if the
// embedded files are misnumbered (a build mistake, caught by the tests).
func Postgres() []SQLMigration {
	ents, err := fs.ReadDir(postgresFS, "postgres")
	if err != nil {
		panic(err)
	}
	var out []SQLMigration
	for _, e := range ents {
		name := strings.TrimSuffix(e.Name(), ".sql")
		num, rest, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			panic(fmt.Sprintf("migrations/postgres/%s: want NNNN_name.sql", e.Name()))
		}
		raw, err := postgresFS.ReadFile("postgres/" + e.Name())
		if err != nil {
			panic(err)
		}
		out = append(out, SQLMigration{Version: v, Name: rest, SQL: string(raw)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			panic(fmt.Sprintf("migrations/postgres: version %d at position %d (no gaps, from 1)", m.Version, i+1))
		}
	}
	return out
}
