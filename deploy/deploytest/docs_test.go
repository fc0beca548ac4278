package deploytest

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// docSection returns the lines of the markdown section that starts with
// the heading line title, up to the next heading of the same or a higher
// level.
func docSection(doc, title string) ([]string, error) {
	lines := strings.Split(doc, "\n")
	level := strings.Index(title, " ")
	for i, l := range lines {
		if l != title {
			continue
		}
		end := len(lines)
		for j := i + 1; j < len(lines); j++ {
			if h := strings.Index(lines[j], " "); h > 0 && h <= level && strings.Trim(lines[j][:h], "#") == "" {
				end = j
				break
			}
		}
		return lines[i+1 : end], nil
	}
	return nil, fmt.Errorf("no section %q", title)
}

// tableRows returns the cells of every row of the markdown tables in lines
// whose first cell is a code span, that cell without its backquotes.
func tableRows(lines []string) [][]string {
	var rows [][]string
	for _, l := range lines {
		if !strings.HasPrefix(l, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), " | ")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		cells[0] = strings.Trim(cells[0], "`")
		rows = append(rows, cells)
	}
	return rows
}

// checkMetricDocs compares the metrics table of operations.md (the section
// "## Metrics": name without the changeprop_ prefix, type, labels) with the
// metrics the service registers, both ways: every registered metric is
// documented with its labels, and no documented metric is gone.
func checkMetricDocs(doc string, known map[string]metricInfo) error {
	lines, err := docSection(doc, "## Metrics")
	if err != nil {
		return err
	}
	var errs []error
	documented := map[string]bool{}
	for _, row := range tableRows(lines) {
		if len(row) < 4 {
			errs = append(errs, fmt.Errorf("metrics table: row %q has %d cells, want 4", row[0], len(row)))
			continue
		}
		name := "changeprop_" + row[0]
		documented[name] = true
		info, ok := known[name]
		if !ok {
			errs = append(errs, fmt.Errorf("metrics table: %s is not registered by changeprop", name))
			continue
		}
		var labels []string
		if row[2] != "" && row[2] != "none" {
			for _, l := range strings.Split(row[2], ",") {
				labels = append(labels, strings.TrimSpace(l))
			}
		}
		if !slices.Equal(labels, info.labels) {
			errs = append(errs, fmt.Errorf("metrics table: %s has labels %v, documented %v", name, info.labels, labels))
		}
		if (row[1] == "histogram") != info.histogram {
			errs = append(errs, fmt.Errorf("metrics table: %s is documented as a %s (histogram: %v)", name, row[1], info.histogram))
		}
	}
	var missing []string
	for name := range known {
		if !documented[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	for _, name := range missing {
		errs = append(errs, fmt.Errorf("metrics table: %s is registered but not documented", name))
	}
	return errors.Join(errs...)
}

// route is a pattern the operations listener registers: "GET /healthz".
var route = regexp.MustCompile(`mux\.Handle(?:Func)?\("([A-Z]+ /[^"]*)"`)

// checkEndpointDocs compares the endpoints table of operations.md with the
// routes http.go registers, both ways. A documented "/x/..." covers every
// route under /x/.
func checkEndpointDocs(doc, httpSource string) error {
	lines, err := docSection(doc, "## Endpoints (on `listen`)")
	if err != nil {
		return err
	}
	var errs []error
	var documented []string
	for _, row := range tableRows(lines) {
		documented = append(documented, row[0])
	}
	covers := func(d, r string) bool {
		if prefix, ok := strings.CutSuffix(d, "..."); ok {
			return strings.HasPrefix(r, prefix)
		}
		return d == r
	}
	var routes []string
	for _, m := range route.FindAllStringSubmatch(httpSource, -1) {
		routes = append(routes, m[1])
	}
	if len(routes) == 0 {
		return errors.New("http.go: no route found (the pattern is wrong, not the file)")
	}
	for _, r := range routes {
		if !slices.ContainsFunc(documented, func(d string) bool { return covers(d, r) }) {
			errs = append(errs, fmt.Errorf("endpoints table: %s is served but not documented", r))
		}
	}
	for _, d := range documented {
		if !slices.ContainsFunc(routes, func(r string) bool { return covers(d, r) }) {
			errs = append(errs, fmt.Errorf("endpoints table: %s is documented but not served", d))
		}
	}
	return errors.Join(errs...)
}

// TestOperationsDocs holds docs/operations.md to the service: its metrics
// table to the registered metrics, its endpoints table to the routes.
func TestOperationsDocs(t *testing.T) {
	doc := string(readFile(t, "../../docs/operations.md"))
	if err := checkMetricDocs(doc, serviceMetrics(t)); err != nil {
		t.Error(err)
	}
	if err := checkEndpointDocs(doc, string(readFile(t, "../../cmd/changeprop/http.go"))); err != nil {
		t.Error(err)
	}
}

// TestOperationsDocsCheckFails runs the checks on altered copies of
// operations.md and http.go: each alteration must fail, naming the cause.
func TestOperationsDocsCheckFails(t *testing.T) {
	doc := string(readFile(t, "../../docs/operations.md"))
	src := string(readFile(t, "../../cmd/changeprop/http.go"))
	known := serviceMetrics(t)
	for _, tc := range []struct {
		name, from, to, want string
		inSource             bool
	}{
		{name: "metric row removed", from: "| `inflight` | gauge | rule | events being handled |\n", to: "", want: "changeprop_inflight is registered but not documented"},
		{name: "metric renamed", from: "| `produce_total` |", to: "| `produced_total` |", want: "changeprop_produced_total is not registered"},
		{name: "label missing", from: "| `partition_lag` | gauge | rule, topic, partition |", to: "| `partition_lag` | gauge | rule, topic |", want: "changeprop_partition_lag has labels [rule topic partition], documented [rule topic]"},
		{name: "histogram as a gauge", from: "| `event_delay_seconds` | histogram |", to: "| `event_delay_seconds` | gauge |", want: "changeprop_event_delay_seconds is documented as a gauge"},
		{name: "endpoint row removed", from: "| `GET /readyz` |", to: "| `GET /ready` |", want: "GET /readyz is served but not documented"},
		{name: "route added", from: `mux.HandleFunc("GET /healthz"`, to: `mux.HandleFunc("GET /livez", nil); mux.HandleFunc("GET /healthz"`, want: "GET /livez is served but not documented", inSource: true},
		{name: "route gone", from: `mux.HandleFunc("POST /v1/events"`, to: `mux.HandleFunc("POST /v1/event"`, want: "POST /v1/events is documented but not served", inSource: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, s := doc, src
			target := &d
			if tc.inSource {
				target = &s
			}
			if !strings.Contains(*target, tc.from) {
				t.Fatalf("the file does not contain %q", tc.from)
			}
			*target = strings.Replace(*target, tc.from, tc.to, 1)
			err := errors.Join(checkMetricDocs(d, known), checkEndpointDocs(d, s))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("check of the altered copy: %v; want an error with %q", err, tc.want)
			}
		})
	}
}
