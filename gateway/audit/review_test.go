package audit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestDamageBeforeUnsignedTailIsNotTorn checks that a damaged frame in the
// last segment, after the latest checkpoint but followed by further
// (acknowledged) entries, stops Open and VerifyDir instead of being cut off
// as a torn tail together with the entries after it.
func TestDamageBeforeUnsignedTailIsNotTorn(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	l := openTest(t, cfg)
	appendN(t, l, 10, 1)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	cpPath := filepath.Join(cfg.Dir, checkpointsFile)
	firstCP, err := os.ReadFile(cpPath)
	if err != nil {
		t.Fatal(err)
	}
	l = openTest(t, cfg)
	appendN(t, l, 10, 1)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Leave only the checkpoint of size 10: entries 10..19 are unsigned,
	// as after a crash before the next checkpoint.
	if err := os.WriteFile(cpPath, firstCP, 0o600); err != nil {
		t.Fatal(err)
	}
	p, off := frameOffset(t, cfg.Dir, 15)
	patchFile(t, p, off+frameHeader+20, func(b []byte) { b[0] ^= 0x10 })

	_, verr := VerifyDir(cfg.Dir, testVKey(t))
	l2, oerr := Open(context.Background(), cfg, WithLogger(testLogger(t)))
	if oerr == nil {
		size := l2.Size()
		l2.Close()
		t.Fatalf("Open accepted damage followed by acknowledged entries, size now %d", size)
	}
	for name, err := range map[string]error{"VerifyDir": verr, "Open": oerr} {
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.Index != 15 {
			t.Errorf("%s: %v; want a CorruptError at entry 15", name, err)
		}
	}
	// Nothing was cut: all 20 entries are still in the segment.
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() <= off {
		t.Fatalf("segment truncated to %d bytes", st.Size())
	}
}
