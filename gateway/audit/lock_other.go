//go:build !unix

package audit

import (
	"errors"
	"os"
)

// lockDir reports that directory locking is not implemented on this
// platform: the log refuses to open rather than risk two writers.
func lockDir(dir string) (*os.File, error) {
	return nil, errors.New("audit log directory locking is only implemented on unix systems")
}
