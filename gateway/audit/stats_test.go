package audit

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestStats(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	ctx := context.Background()
	cfg := testConfig(t, t.TempDir())
	day1 := time.Date(2026, 3, 1, 10, 0, 0, 0, cst)
	late := time.Date(2026, 3, 1, 17, 30, 0, 0, time.UTC) // 01:30 on 2 March in CST
	entries := []Entry{
		{Time: day1, Kind: KindExchange, Consumer: "a", Datasets: []string{"ds1"}, Decision: DecisionPermit},
		{Time: day1, Kind: KindExchange, Consumer: "a", Datasets: []string{"ds1"}, Decision: DecisionPartial},
		{Time: day1, Kind: KindExchange, Consumer: "b", Datasets: []string{"ds1"}, Decision: DecisionPermit},
		{Time: day1, Kind: KindAutofill, Consumer: "b", Datasets: []string{"ds1", "ds2"}, Decision: DecisionPermit},
		{Time: day1, Kind: KindExchange, Consumer: "c", Datasets: []string{"ds2"}, Decision: DecisionDeny, DenyReason: "NO_GRANT"},
		{Time: day1, Kind: KindExchange, Consumer: "c", Datasets: []string{"ds2"}, Decision: DecisionDeny},
		{Time: late, Kind: KindExchange, Consumer: "a", Datasets: []string{"ds1"}, Decision: DecisionPermit},
		{Time: late, Kind: KindExchange, Consumer: "d", Datasets: []string{"ds1"}, Decision: DecisionDeny, DenyReason: "NO_GRANT"},
		{Time: late, Kind: KindGrantTransition, GrantIDs: []string{"g-1"}, Datasets: []string{"ds1"}},
	}
	wantEx := "[{2026-03-01 ds1 a 2} {2026-03-01 ds1 b 2} {2026-03-01 ds2 b 1} {2026-03-02 ds1 a 1}]"
	wantDn := "[{2026-03-01 NO_GRANT 1} {2026-03-01 UNSPECIFIED 1} {2026-03-02 NO_GRANT 1}]"
	check := func(t *testing.T, s *Stats, entries uint64, from, to, wantEx, wantDn string) {
		t.Helper()
		if s.Entries() != entries {
			t.Errorf("entries %d, want %d", s.Entries(), entries)
		}
		ex, dn := s.Counts(from, to)
		if got := fmt.Sprint(ex); got != wantEx {
			t.Errorf("exchanges %s\nwant %s", got, wantEx)
		}
		if got := fmt.Sprint(dn); got != wantDn {
			t.Errorf("denials %s\nwant %s", got, wantDn)
		}
	}

	s := NewStats(cst)
	l := openTest(t, cfg, WithReplaySink(s))
	for _, e := range entries[:5] {
		if _, err := l.AppendEntry(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened, a fresh Stats is rebuilt from the log and then follows it.
	s = NewStats(cst)
	l = openTest(t, cfg, WithReplaySink(s))
	defer l.Close()
	if s.Entries() != 5 {
		t.Fatalf("replay counted %d entries, want 5", s.Entries())
	}
	for _, e := range entries[5:] {
		if _, err := l.AppendEntry(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("all days", func(t *testing.T) { check(t, s, 9, "", "", wantEx, wantDn) })
	t.Run("first day", func(t *testing.T) {
		check(t, s, 9, "2026-03-01", "2026-03-01",
			"[{2026-03-01 ds1 a 2} {2026-03-01 ds1 b 2} {2026-03-01 ds2 b 1}]",
			"[{2026-03-01 NO_GRANT 1} {2026-03-01 UNSPECIFIED 1}]")
	})
	t.Run("from second day", func(t *testing.T) {
		check(t, s, 9, "2026-03-02", "", "[{2026-03-02 ds1 a 1}]", "[{2026-03-02 NO_GRANT 1}]")
	})
	t.Run("UTC days", func(t *testing.T) {
		u := NewStats(nil)
		if err := l.Scan(ctx, 0, func(i uint64, data []byte) error { u.Appended(i, data); return nil }); err != nil {
			t.Fatal(err)
		}
		// In UTC, the late entries fall on 1 March.
		check(t, u, 9, "", "", "[{2026-03-01 ds1 a 3} {2026-03-01 ds1 b 2} {2026-03-01 ds2 b 1}]",
			"[{2026-03-01 NO_GRANT 2} {2026-03-01 UNSPECIFIED 1}]")
	})
}

func TestStatsIgnoresGarbage(t *testing.T) {
	s := NewStats(nil)
	for _, b := range [][]byte{nil, {1}, {2, '{', '}'}, {1, 'x'}, []byte("\x01{\"time\":\"yesterday\",\"decision\":\"deny\"}")} {
		s.Appended(0, b)
	}
	if ex, dn := s.Counts("", ""); s.Entries() != 0 || len(ex) != 0 || len(dn) != 0 {
		t.Errorf("garbage counted: %d %v %v", s.Entries(), ex, dn)
	}
}
