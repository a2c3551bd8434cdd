package audit_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/tongban/tongban/gateway/audit"
	"github.com/tongban/tongban/gateway/audit/merkle"
)

// Example shows the gateway's use of the log: record an exchange, hand the
// caller its receipt, and later prove the entry against a checkpoint with
// only the public key.
func Example() {
	dir, err := os.MkdirTemp("", "audit-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	skey, vkey, err := audit.GenerateKey("tongban.example/node-1")
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	l, err := audit.Open(ctx, audit.Config{Dir: dir, Origin: "tongban.example/node-1", SigningKey: skey})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	subjectKey := []byte("secret key held by the log owner")
	receipt, err := l.AppendEntry(ctx, audit.Entry{
		Time:           time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC),
		RequestID:      "req-1",
		Node:           "node-1",
		Kind:           audit.KindExchange,
		Consumer:       "sjz-approval-system",
		Datasets:       []string{"market.business_licences"},
		Subjects:       audit.SubjectHashes(subjectKey, []string{"91130100MA0CXXXX1X", "130102199003077777"}),
		Purpose:        "business registration",
		Decision:       audit.DecisionPermit,
		FieldsReturned: []string{"name"},
		Delivery:       audit.DeliveryLive,
		ResponseDigest: audit.Digest([]byte(`{"name":"..."}`)),
	})
	if err != nil {
		// Fail closed: an exchange that cannot be recorded is refused.
		log.Fatal(err)
	}
	fmt.Println("receipt index:", receipt.Index)

	cp, err := l.Checkpoint()
	if err != nil {
		log.Fatal(err)
	}
	entry, _ := l.Entry(ctx, receipt.Index)
	proof, _ := l.InclusionProof(receipt.Index, cp.Size)
	err = audit.VerifyReceipt(entry, receipt.Index, merkle.HashesToBytes(proof), cp.Note, vkey)
	fmt.Println("receipt verifies:", err == nil)

	accesses, _, _ := l.EntriesForSubject(ctx, audit.SubjectHash(subjectKey, "91130100MA0CXXXX1X"), 10, 0)
	fmt.Println("accesses:", len(accesses), accesses[0].Entry.Consumer)
	// Output:
	// receipt index: 0
	// receipt verifies: true
	// accesses: 1 sjz-approval-system
}
