package audit

import (
	"os"
	"path/filepath"
	"testing"
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
