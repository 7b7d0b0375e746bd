package bench

import (
	"os"
	"testing"

	"github.com/hodei-ci/hodei/internal/store/postgres/pgtest"
)

// TestMain stops the private PostgreSQL that a test started, if any.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
