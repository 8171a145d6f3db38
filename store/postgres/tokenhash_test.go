package postgres_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"

	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/lanyard/lanyard/internal/pgtest"
	"github.com/lanyard/lanyard/migrations"
	"github.com/lanyard/lanyard/store"
	"github.com/lanyard/lanyard/store/postgres"
	"github.com/lanyard/lanyard/store/storetest"
)

// TestRedeemTokenWithoutHashColumn: a token written by a replica of the
// release before migration 0003 (a rolling upgrade) has no hash in its
// column; the redemption checks the hash kept in its record instead, so
// the right secret redeems it and a wrong one does not.
func TestRedeemTokenWithoutHashColumn(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	db := openDSN(t, dsn, postgres.Options{})
	h := storetest.PutToken(t, db, "old")
	storetest.PutToken(t, db, "old2")
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if tag, err := conn.Exec(ctx, "UPDATE tokens SET hash = NULL"); err != nil || tag.RowsAffected() != 2 {
		t.Fatalf("clear hash column: %v, %v", tag, err)
	}
	wrong := sha256.Sum256([]byte("x"))
	if err := db.RedeemToken(ctx, "old2", wrong[:], storetest.T0, storetest.NewCert(), nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("wrong secret: err = %v, want %v", err, store.ErrNotFound)
	}
	if err := db.RedeemToken(ctx, "old", h, storetest.T0, storetest.NewCert(), nil); err != nil {
		t.Fatalf("right secret: %v", err)
	}
	if tok, err := db.GetToken("old"); err != nil || tok.UsedAt.IsZero() {
		t.Fatalf("token after redemption = %+v, %v; want used", tok, err)
	}
}

// TestTokenHashColumnBackfilled: migration 0003's backfill writes the
// hash kept in each token's record into the new column.
func TestTokenHashColumnBackfilled(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	db := openDSN(t, dsn, postgres.Options{})
	h := storetest.PutToken(t, db, "tok")
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "UPDATE tokens SET hash = NULL"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, backfill(t)); err != nil {
		t.Fatal(err)
	}
	var got []byte
	if err := conn.QueryRow(ctx, "SELECT hash FROM tokens WHERE id = 'tok'").Scan(&got); err != nil || string(got) != string(h) {
		t.Fatalf("hash column = %x, %v; want %x", got, err, h)
	}
}

// backfill is migration 0003's UPDATE statement, as released.
func backfill(t *testing.T) string {
	t.Helper()
	for _, m := range migrations.Postgres() {
		if m.Name != "token_hash" {
			continue
		}
		for _, line := range strings.Split(m.SQL, "\n") {
			if strings.HasPrefix(line, "UPDATE tokens") {
				return line
			}
		}
	}
	t.Fatal("migration token_hash has no UPDATE tokens statement")
	return ""
}
