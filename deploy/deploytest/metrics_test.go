package deploytest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"changeprop/breaker"
	"changeprop/dispatch"
)

// metricInfo is a metric family the service registers.
type metricInfo struct {
	labels    []string
	histogram bool // exported as _bucket, _sum and _count series
}

// recorder is a Registerer that keeps what is registered on it, to read
// the collectors' types and descriptors.
type recorder struct {
	reg        *prometheus.Registry
	collectors []prometheus.Collector
}

func (r *recorder) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return r.reg.Register(c)
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *recorder) Unregister(c prometheus.Collector) bool { return r.reg.Unregister(c) }

var (
	descName   = regexp.MustCompile(`fqName: "([^"]+)"`)
	descLabels = regexp.MustCompile(`variableLabels: \{([^}]*)\}\}$`)
)

// serviceMetrics returns the changeprop_ metrics of the service: those
// dispatch.NewMetrics registers and those of a breaker Set's collector (the
// two sources of cmd/changeprop's registry), read from their descriptors,
// since the collectors emit series only once rules run.
func serviceMetrics(t *testing.T) map[string]metricInfo {
	t.Helper()
	rec := &recorder{reg: prometheus.NewRegistry()}
	dispatch.NewMetrics(rec)
	rec.MustRegister(breaker.NewSet(breaker.Settings{}).Collector())
	out := map[string]metricInfo{}
	for _, c := range rec.collectors {
		_, isHist := c.(*prometheus.HistogramVec)
		if _, ok := c.(prometheus.Histogram); ok {
			isHist = true
		}
		ch := make(chan *prometheus.Desc, 64)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			s := d.String()
			n, l := descName.FindStringSubmatch(s), descLabels.FindStringSubmatch(s)
			if n == nil || l == nil {
				t.Fatalf("cannot read descriptor %s", s)
			}
			var labels []string
			if l[1] != "" {
				for _, x := range strings.Split(l[1], ",") {
					labels = append(labels, strings.TrimSuffix(strings.TrimPrefix(x, "c("), ")"))
				}
			}
			out[n[1]] = metricInfo{labels: labels, histogram: isHist}
		}
	}
	if len(out) < 13 {
		t.Fatalf("read %d metrics from the service's collectors, want the 13 of service.md and more: %v", len(out), out)
	}
	return out
}

// targetLabels are the labels Prometheus adds to every scraped series.
var targetLabels = []string{"job", "instance", "namespace", "pod", "service", "container", "endpoint"}

var (
	// metricRef is a changeprop_ identifier not inside another identifier.
	metricRef = regexp.MustCompile(`(?:^|[^A-Za-z0-9_:])(changeprop_[A-Za-z0-9_:]*)(\{[^}]*\})?`)
	// matcherLabel is the label name of a label matcher in a selector.
	matcherLabel = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)`)
)

// checkText reports every changeprop_ metric named in text that the service
// does not register: an unknown name, a _bucket/_sum/_count suffix on a
// metric that is not a histogram, or a selector label the metric lacks.
func checkText(where, text string, known map[string]metricInfo) []error {
	var errs []error
	for _, m := range metricRef.FindAllStringSubmatch(text, -1) {
		// A trailing colon is prose ("see changeprop_x: ..."), not a
		// recording rule's name.
		name, selector := strings.TrimRight(m[1], ":"), m[2]
		info, ok := known[name]
		extra := []string(nil)
		if !ok {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				base, cut := strings.CutSuffix(name, suffix)
				if bi, found := known[base]; cut && found {
					if !bi.histogram {
						errs = append(errs, fmt.Errorf("%s: %s: %s is not a histogram", where, name, base))
					}
					info, ok = bi, true
					if suffix == "_bucket" {
						extra = []string{"le"}
					}
				}
			}
		}
		if !ok {
			errs = append(errs, fmt.Errorf("%s: metric %s is not registered by changeprop", where, name))
			continue
		}
		for _, lm := range matcherLabel.FindAllStringSubmatch(selector, -1) {
			l := lm[1]
			if !slices.Contains(info.labels, l) && !slices.Contains(extra, l) && !slices.Contains(targetLabels, l) {
				errs = append(errs, fmt.Errorf("%s: %s has no label %q (it has %v)", where, name, l, info.labels))
			}
		}
	}
	return errs
}

// checkMetricFiles checks every string of the Grafana dashboards (*.json)
// and alert rule files (*.yaml) given: expressions, template variable
// queries, descriptions and annotations. It fails too when a file names no
// changeprop metric at all (the pattern would then be wrong, not the file).
func checkMetricFiles(files []string, known map[string]metricInfo) error {
	var errs []error
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var doc any
		if strings.HasSuffix(f, ".json") {
			err = json.Unmarshal(data, &doc)
		} else {
			err = yaml.Unmarshal(data, &doc)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
			continue
		}
		seen := 0
		walkStrings(doc, "", func(path, s string) {
			seen += len(metricRef.FindAllString(s, -1))
			errs = append(errs, checkText(f+": "+path, s, known)...)
		})
		if seen == 0 {
			errs = append(errs, fmt.Errorf("%s: names no changeprop_ metric", f))
		}
	}
	return errors.Join(errs...)
}

// walkStrings calls fn with every string value of a decoded JSON or YAML
// document and its path.
func walkStrings(v any, path string, fn func(path, s string)) {
	switch x := v.(type) {
	case string:
		fn(path, x)
	case map[string]any:
		for k, e := range x {
			walkStrings(e, path+"."+k, fn)
		}
	case []any:
		for i, e := range x {
			walkStrings(e, fmt.Sprintf("%s[%d]", path, i), fn)
		}
	}
}

func metricFiles(t *testing.T) []string {
	files := append(globFiles(t, "../grafana/*.json"), globFiles(t, "../prometheus/*.yaml")...)
	if len(files) < 3 {
		t.Fatalf("want the two dashboards and the alert rules, have %v", files)
	}
	return files
}

// TestMetricNames checks that the dashboards and alerts name only metrics
// (and labels) the service registers.
func TestMetricNames(t *testing.T) {
	if err := checkMetricFiles(metricFiles(t), serviceMetrics(t)); err != nil {
		t.Error(err)
	}
}

// TestMetricNamesCheckFails runs the check on altered copies of the
// dashboards: each alteration must fail it, naming what is wrong.
func TestMetricNamesCheckFails(t *testing.T) {
	known := serviceMetrics(t)
	for _, tc := range []struct {
		name, file, from, to, want string
	}{
		{"unknown metric", "../grafana/jobqueue.json", "changeprop_inflight", "changeprop_inflight_jobs", "changeprop_inflight_jobs is not registered"},
		{"renamed counter", "../grafana/breakers.json", "changeprop_breaker_transitions_total", "changeprop_breaker_transitions", "changeprop_breaker_transitions is not registered"},
		{"bucket of a gauge", "../grafana/jobqueue.json", "changeprop_event_delay_seconds_bucket", "changeprop_inflight_bucket", "changeprop_inflight is not a histogram"},
		{"per-wiki label", "../grafana/jobqueue.json", `changeprop_inflight{`, `changeprop_inflight{wiki=\"enwiki\",`, `has no label "wiki"`},
		{"unknown metric in an alert", "../prometheus/alerts.yaml", "changeprop_errors_produced_total", "changeprop_error_events_total", "changeprop_error_events_total is not registered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := string(readFile(t, tc.file))
			if !strings.Contains(data, tc.from) {
				t.Fatalf("%s does not contain %q", tc.file, tc.from)
			}
			copyPath := filepath.Join(t.TempDir(), filepath.Base(tc.file))
			if err := os.WriteFile(copyPath, []byte(strings.Replace(data, tc.from, tc.to, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			// The unaltered file passes, the altered copy fails.
			if err := checkMetricFiles([]string{tc.file}, known); err != nil {
				t.Fatalf("the original fails: %v", err)
			}
			err := checkMetricFiles([]string{copyPath}, known)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("check of the altered copy: %v; want an error with %q", err, tc.want)
			}
		})
	}
}

// TestServiceMetricsOfSpec checks that the metric list read from the
// collectors holds service.md's metrics, so that a broken reader cannot
// pass every dashboard.
func TestServiceMetricsOfSpec(t *testing.T) {
	known := serviceMetrics(t)
	for name, labels := range map[string][]string{
		"changeprop_events_consumed_total":     {"rule", "topic"},
		"changeprop_dispatch_total":            {"rule", "outcome"},
		"changeprop_dispatch_duration_seconds": {"rule"},
		"changeprop_event_delay_seconds":       {"rule"},
		"changeprop_inflight":                  {"rule"},
		"changeprop_partition_lag":             {"rule", "topic", "partition"},
		"changeprop_committed_offset":          {"rule", "topic", "partition"},
		"changeprop_breaker_state":             {"destination"},
		"changeprop_breaker_transitions_total": {"destination", "to"},
		"changeprop_retries_produced_total":    {"rule"},
		"changeprop_errors_produced_total":     {"rule"},
		"changeprop_produce_total":             {"topic", "result"},
	} {
		if got, ok := known[name]; !ok || !slices.Equal(got.labels, labels) {
			t.Errorf("%s: read %+v (registered %v), want labels %v", name, got, ok, labels)
		}
	}
	for name, hist := range map[string]bool{"changeprop_event_delay_seconds": true, "changeprop_dispatch_duration_seconds": true, "changeprop_inflight": false} {
		if known[name].histogram != hist {
			t.Errorf("%s: histogram %v, want %v", name, known[name].histogram, hist)
		}
	}
}

// TestAlertRules decodes deploy/prometheus/alerts.yaml strictly as a
// PrometheusRule and checks the alerts the issue asks for are there.
func TestAlertRules(t *testing.T) {
	objs, err := decodeStream("alerts.yaml", readFile(t, "../prometheus/alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].kind != "PrometheusRule" {
		t.Fatalf("want one PrometheusRule, have %v", kinds(objs))
	}
	var exprs []string
	for _, g := range objs[0].value.(*prometheusRule).Spec.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	all := strings.Join(exprs, "\n")
	for _, want := range []string{"changeprop_partition_lag", "changeprop_event_delay_seconds_bucket", "changeprop_errors_produced_total", "changeprop_breaker_state"} {
		if !strings.Contains(all, want) {
			t.Errorf("no alert on %s", want)
		}
	}
}

// TestDashboards checks the dashboards' shape: valid JSON with a uid and
// title, unique panel ids, every query with a refId and the datasource
// variable.
func TestDashboards(t *testing.T) {
	for _, f := range globFiles(t, "../grafana/*.json") {
		var d struct {
			UID, Title, Description string
			Panels                  []struct {
				ID          int
				Type, Title string
				Description string
				Targets     []struct {
					RefID      string `json:"refId"`
					Expr       string
					Datasource any
				}
			}
		}
		if err := json.Unmarshal(readFile(t, f), &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if d.UID == "" || d.Title == "" || len(d.Panels) < 3 {
			t.Errorf("%s: want a uid, a title and panels", f)
		}
		ids := map[int]bool{}
		for _, p := range d.Panels {
			if ids[p.ID] {
				t.Errorf("%s: panel id %d twice", f, p.ID)
			}
			ids[p.ID] = true
			if p.Type == "row" || p.Type == "text" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", f, p.Title)
			}
			for _, q := range p.Targets {
				if q.RefID == "" || strings.TrimSpace(q.Expr) == "" {
					t.Errorf("%s: panel %q: a query without refId or expr", f, p.Title)
				}
				if err := balanced(q.Expr); err != nil {
					t.Errorf("%s: panel %q: %v", f, p.Title, err)
				}
				if b, _ := json.Marshal(q.Datasource); !strings.Contains(string(b), "${datasource}") {
					t.Errorf("%s: panel %q: datasource %s, want ${datasource}", f, p.Title, b)
				}
			}
		}
	}
}
