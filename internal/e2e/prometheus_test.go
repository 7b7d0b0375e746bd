package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// prometheusEnv names the prometheus binary the monitoring test runs;
// scripts/test installs Debian's prometheus and sets it. Unset, the test
// looks for prometheus on PATH and fails, never skips, without one.
const prometheusEnv = "HODEI_TEST_PROMETHEUS"

func prometheusBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(prometheusEnv); p != "" {
		return p
	}
	p, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("no prometheus binary: install Debian's prometheus package or set %s (scripts/test does)", prometheusEnv)
	}
	return p
}

// promQuery is a client of the Prometheus HTTP API.
type promQuery struct {
	base string
	hc   *http.Client
}

type promVector struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	} `json:"data"`
}

// query evaluates expr now. A PromQL error is returned as an error.
func (p promQuery) query(ctx context.Context, expr string) (promVector, error) {
	var v promVector
	req, err := http.NewRequestWithContext(ctx, "GET", p.base+"/api/v1/query?query="+url.QueryEscape(expr), nil)
	if err != nil {
		return v, err
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return v, fmt.Errorf("%s: HTTP %d: %w", expr, resp.StatusCode, err)
	}
	if v.Status != "success" {
		return v, fmt.Errorf("%s: %s: %s", expr, v.ErrorType, v.Error)
	}
	return v, nil
}

// scalar is the value of a one-sample result, "" if there is none.
func (v promVector) scalar() string {
	if len(v.Data.Result) != 1 {
		return ""
	}
	s, _ := v.Data.Result[0].Value[1].(string)
	return s
}

// TestPrometheusScrapesTheServer: a real Prometheus scrapes a real server
// that has run pipelines, with the alert rules of deploy/prometheus loaded.
// PromQL counts the jobs the server ran; every rule evaluates without error;
// every expression of the Grafana dashboard in deploy/grafana is valid
// PromQL that this Prometheus evaluates.
func TestPrometheusScrapesTheServer(t *testing.T) {
	promBin := prometheusBinary(t)
	httpAddr := freeAddr(t)
	srv := start(t, "server.log", "server", "--data-dir", t.TempDir(), "--http", httpAddr, "--nats-listen", "none",
		"--workers", "2", "--auth", "off")
	a := api{base: "http://" + httpAddr, hc: &http.Client{Timeout: 10 * time.Second}}
	waitReady(t, a, srv)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const runs = 4
	var ids []string
	for i := range runs {
		id, err := a.submit(ctx, fmt.Sprintf(`name: metrics-%d
jobs:
  build:
    steps:
      - run: echo building %d
  test:
    needs: [build]
    steps:
      - run: echo testing %d
`, i%2, i, i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		eventually(t, 2*time.Minute, "run "+id+" final", func() (bool, error) {
			r, err := a.run(ctx, id)
			if final(r.State) && r.State != "succeeded" {
				t.Fatalf("run %s ended %s", id, r.State)
			}
			return r.State == "succeeded", err
		})
	}

	rules, err := filepath.Abs(filepath.Join("..", "..", "deploy", "prometheus", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	config := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(config, fmt.Appendf(nil, `global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: hodei
    static_configs: [{targets: [%q]}]
`, rules, httpAddr), 0o644); err != nil {
		t.Fatal(err)
	}
	promAddr := freeAddr(t)
	startCmd(t, "prometheus.log", exec.Command(promBin, "--config.file="+config, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr))
	pq := promQuery{base: "http://" + promAddr, hc: &http.Client{Timeout: 10 * time.Second}}

	// The counts arrive with the first scrapes.
	for expr, want := range map[string]string{
		`up{job="hodei"}`: "1",
		`sum(hodei_jobs_finished_total{state="succeeded"})`: fmt.Sprint(2 * runs),
		`sum(hodei_runs_finished_total{state="succeeded"})`: fmt.Sprint(runs),
		`sum(hodei_run_duration_seconds_count)`:             fmt.Sprint(runs),
		`sum(hodei_job_submit_to_start_seconds_count)`:      fmt.Sprint(2 * runs),
		`count(hodei_run_duration_seconds_count)`:           "2", // two pipelines, one tenant
		`sum(hodei_log_bytes_total) > 0`:                    "",  // any value: checked below
	} {
		eventually(t, time.Minute, expr, func() (bool, error) {
			v, err := pq.query(ctx, expr)
			if err != nil {
				return false, err
			}
			got := v.scalar()
			if want == "" {
				return got != "", nil
			}
			return got == want, fmt.Errorf("got %q, want %q", got, want)
		})
	}

	// Every alert rule has been evaluated without error.
	eventually(t, time.Minute, "alert rules evaluated", func() (bool, error) {
		req, err := http.NewRequestWithContext(ctx, "GET", pq.base+"/api/v1/rules", nil)
		if err != nil {
			return false, err
		}
		resp, err := pq.hc.Do(req)
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		var rs struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name      string `json:"name"`
						Health    string `json:"health"`
						LastError string `json:"lastError"`
					} `json:"rules"`
				} `json:"groups"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&rs); err != nil {
			return false, err
		}
		n := 0
		for _, g := range rs.Data.Groups {
			for _, r := range g.Rules {
				if r.Health == "err" {
					t.Fatalf("rule %s: %s", r.Name, r.LastError)
				}
				if r.Health != "ok" {
					return false, fmt.Errorf("rule %s: health %q", r.Name, r.Health)
				}
				n++
			}
		}
		return n > 0, fmt.Errorf("no rules loaded")
	})

	// The dashboard's expressions, with its variables set as Grafana
	// would for "All".
	exprs := dashboardExprs(t)
	if len(exprs) < 10 {
		t.Fatalf("dashboard has %d expressions; read wrongly?", len(exprs))
	}
	vars := strings.NewReplacer("$tenant", ".*", "$pool", ".*", "$__rate_interval", "1m")
	for _, e := range exprs {
		if _, err := pq.query(ctx, vars.Replace(e)); err != nil {
			t.Errorf("dashboard expression: %v", err)
		}
	}
}

// dashboardExprs returns the PromQL expressions of the panels of the Grafana
// dashboard.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "grafana", "hodei.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("deploy/grafana/hodei.json: %v", err)
	}
	var out []string
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	return out
}
