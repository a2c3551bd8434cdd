package correctiondb

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/tongban/tongban/gateway/autofill"
	"github.com/tongban/tongban/gateway/autofill/correctiontest"
)

func TestConformance(t *testing.T) {
	correctiontest.Run(t, func(t *testing.T) autofill.Store {
		s, err := Open(context.Background(), filepath.Join(t.TempDir(), "corrections.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "corrections.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	c := &autofill.Correction{ID: "c1", Form: "f", Field: "x", ApplicantID: "a", Dataset: "d", Department: "market",
		State: autofill.StateOpen, RaisedAt: time.Unix(1700000000, 5).UTC()}
	if err := s.Add(ctx, c); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.List(ctx, autofill.Filter{})
	if err != nil || len(got) != 1 || *got[0] != *c {
		t.Fatalf("after reopen: %v, %v", got, err)
	}
	if _, err := Open(ctx, ""); err == nil {
		t.Error("empty path accepted")
	}
}
