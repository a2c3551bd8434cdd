package audit

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tongban/tongban/schemas/testenv"
)

func TestSyncData(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "seg"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("entry")); err != nil {
		t.Fatal(err)
	}
	if err := (dataSyncFile{f}).Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := (dataSyncFile{f}).Sync(); err == nil {
		t.Fatal("Sync of a closed file succeeded")
	}
}

// BenchmarkCommitSync compares what one group commit of about 16 exchange
// entries (20 KB appended to a segment) costs with fsync and with
// fdatasync (syncData). cpu-ns/op includes the kernel's work on the
// process's behalf.
func BenchmarkCommitSync(b *testing.B) {
	batch := make([]byte, 20_000)
	for i := range batch {
		batch[i] = byte(i)
	}
	for _, c := range []struct {
		name string
		sync func(*os.File) error
	}{
		{"fsync", (*os.File).Sync},
		{"fdatasync", syncData},
	} {
		b.Run(c.name, func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "seg"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			reportCPU := testenv.CPUPerOp(b)
			for b.Loop() {
				if _, err := f.Write(batch); err != nil {
					b.Fatal(err)
				}
				if err := c.sync(f); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU()
		})
	}
}
