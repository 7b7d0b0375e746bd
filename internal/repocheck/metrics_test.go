package repocheck

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var metricName = regexp.MustCompile(`\bhodei_[a-z_]+[a-z]`)

// declaredMetrics returns the metric names the Go code declares: every
// "hodei_..." string literal of a non-test file under internal and cmd.
func declaredMetrics(t *testing.T, root string) map[string]bool {
	t.Helper()
	lit := regexp.MustCompile(`"(hodei_[a-z_]+[a-z])"`)
	out := map[string]bool{}
	for _, dir := range []string{"internal", "cmd"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range lit.FindAllStringSubmatch(string(b), -1) {
				out[m[1]] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestDeployNamesDeclaredMetrics: every metric that the dashboard and the
// alert rules under deploy/ query is one the code declares and
// docs/api.md lists, so that renaming a metric cannot leave them silently
// empty. (Whether their queries are valid PromQL is for the monitoring
// test on a real Prometheus: internal/e2e.)
func TestDeployNamesDeclaredMetrics(t *testing.T) {
	r := root(t)
	declared := declaredMetrics(t, r)
	if !declared["hodei_jobs_finished_total"] {
		t.Fatalf("found %d declared metrics, not hodei_jobs_finished_total: the scan is broken", len(declared))
	}
	apiDoc, err := os.ReadFile(filepath.Join(r, "docs", "api.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range metricName.FindAllString(string(apiDoc), -1) {
		documented[m] = true
	}
	n := 0
	for _, f := range []string{"deploy/grafana/hodei.json", "deploy/prometheus/alerts.yaml"} {
		b, err := os.ReadFile(filepath.Join(r, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range metricName.FindAllString(string(b), -1) {
			n++
			base := m
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				if b, ok := strings.CutSuffix(m, suffix); ok && declared[b] {
					base = b
				}
			}
			if !declared[base] {
				t.Errorf("%s queries %s, which no code declares", f, m)
			}
			if !documented[base] {
				t.Errorf("%s queries %s, which docs/api.md does not list", f, m)
			}
		}
	}
	if n < 10 {
		t.Errorf("found %d metric names under deploy/: the scan is broken", n)
	}
}
