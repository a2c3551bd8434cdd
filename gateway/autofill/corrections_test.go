package autofill_test

import (
	"testing"

	"github.com/tongban/tongban/gateway/autofill"
	"github.com/tongban/tongban/gateway/autofill/correctiontest"
)

func TestMemoryStore(t *testing.T) {
	correctiontest.Run(t, func(*testing.T) autofill.Store { return autofill.NewMemoryStore() })
}
