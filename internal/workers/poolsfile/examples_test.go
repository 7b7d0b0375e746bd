package poolsfile_test

import (
	"path/filepath"
	"testing"

	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
)

// TestExamplePoolsFilesLoad: every pools file under examples/pools is one
// the server accepts.
func TestExamplePoolsFilesLoad(t *testing.T) {
	files, err := filepath.Glob("../../../examples/pools/*.yaml")
	if err != nil || len(files) < 2 {
		t.Fatalf("example pools files: %v, %v", files, err)
	}
	for _, f := range files {
		cfg, err := poolsfile.LoadConfig(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if len(cfg.Pools) == 0 {
			t.Errorf("%s: no pool", f)
		}
	}
}
