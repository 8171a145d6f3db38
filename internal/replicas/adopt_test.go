package replicas_test

import (
	"context"
	"sync"
	"testing"

	"github.com/lanyard/lanyard/admincred"
	"github.com/lanyard/lanyard/internal/pgtest"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/store/engine"
)

// TestAdminAdoptionByReplicasStartingTogether: replicas starting together
// on an empty database all record the CA folder's admin certificate at
// once; every one of them must come up (one records it, the others find
// it), where before the second insert failed its replica's start.
func TestAdminAdoptionByReplicasStartingTogether(t *testing.T) {
	c := testca.Start(t, testca.Options{}) // a CA folder with admin.crt
	cert, err := admincred.ReadCertificate(c.Paths.AdminCert)
	if err != nil {
		t.Fatal(err)
	}
	db, err := engine.Open(context.Background(), pgtest.NewDatabase(t), engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc := admincred.New(admincred.Config{Signer: c.Authority, Store: db})
	const replicas = 8
	var wg sync.WaitGroup
	recorded := make(chan bool, replicas)
	start := make(chan struct{})
	for range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ok, err := svc.Adopt(context.Background(), cert)
			if err != nil {
				t.Errorf("adopt: %v", err)
			}
			recorded <- ok
		}()
	}
	close(start)
	wg.Wait()
	close(recorded)
	n := 0
	for ok := range recorded {
		if ok {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d adoptions recorded the certificate, want 1", n)
	}
}
