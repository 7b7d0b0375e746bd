package server

import (
	"os"
	"testing"

	"github.com/hodei-ci/hodei/internal/store/postgres/pgtest"
)

// TestMain stops the private PostgreSQL server that pgtest may start.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
