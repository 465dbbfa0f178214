package bench

import (
	"testing"

	"go.uber.org/goleak"
)

// The harness starts servers, load workers, Kafka clients and pipeline stages; every one of them
// must be gone when a run returns.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
