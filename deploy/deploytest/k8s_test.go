package deploytest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// object is one decoded manifest: its kind and the typed value.
type object struct {
	source     string // file (and document number) it came from
	apiVersion string
	kind       string
	name       string
	value      any // pointer to the typed object
}

// typeMeta is what every manifest opens with.
type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
}

// newTyped returns a pointer to the API type of apiVersion/kind, or nil
// when this package knows no type for it.
func newTyped(apiVersion, kind string) any {
	switch apiVersion + "/" + kind {
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}
	case "v1/Secret":
		return &corev1.Secret{}
	case "v1/Service":
		return &corev1.Service{}
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}
	case "v1/Namespace":
		return &corev1.Namespace{}
	case "v1/Pod":
		return &corev1.Pod{}
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}
	case "batch/v1/Job":
		return &batchv1.Job{}
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "autoscaling/v2/HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &serviceMonitor{}
	case "monitoring.coreos.com/v1/PrometheusRule":
		return &prometheusRule{}
	}
	return nil
}

// docSep splits a YAML stream into documents.
var docSep = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

// decodeStream strictly decodes every non-empty document of a YAML stream
// into its API type: unknown or duplicate fields, wrong types and kinds
// this package does not know are errors.
func decodeStream(source string, data []byte) ([]object, error) {
	var out []object
	var errs []string
	for i, doc := range docSep.Split(string(data), -1) {
		if isBlankYAML(doc) {
			continue
		}
		src := fmt.Sprintf("%s#%d", source, i)
		var tm typeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", src, err))
			continue
		}
		if tm.APIVersion == "" || tm.Kind == "" || tm.Metadata.Name == "" {
			errs = append(errs, fmt.Sprintf("%s: apiVersion, kind and metadata.name are required (have %q %q %q)",
				src, tm.APIVersion, tm.Kind, tm.Metadata.Name))
			continue
		}
		v := newTyped(tm.APIVersion, tm.Kind)
		if v == nil {
			errs = append(errs, fmt.Sprintf("%s: no API type known for %s %s", src, tm.APIVersion, tm.Kind))
			continue
		}
		if err := yaml.UnmarshalStrict([]byte(doc), v); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %s %s: %v", src, tm.Kind, tm.Metadata.Name, err))
			continue
		}
		if c, ok := v.(interface{ check() error }); ok {
			if err := c.check(); err != nil {
				errs = append(errs, fmt.Sprintf("%s: %s %s: %v", src, tm.Kind, tm.Metadata.Name, err))
				continue
			}
		}
		out = append(out, object{source: src, apiVersion: tm.APIVersion, kind: tm.Kind, name: tm.Metadata.Name, value: v})
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return out, nil
}

// isBlankYAML reports whether a document holds only comments and space.
func isBlankYAML(doc string) bool {
	for line := range strings.SplitSeq(doc, "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// The CRDs: only the fields the manifests here use, so that a misspelt or
// misplaced field fails the strict decode. Fields follow the
// monitoring.coreos.com/v1 and kind.x-k8s.io/v1alpha4 schemas.

type serviceMonitor struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		JobLabel  string                   `json:"jobLabel,omitempty"`
		Endpoints []serviceMonitorEndpoint `json:"endpoints"`
	} `json:"spec"`
}

type serviceMonitorEndpoint struct {
	Port          string `json:"port,omitempty"`
	Path          string `json:"path,omitempty"`
	Scheme        string `json:"scheme,omitempty"`
	Interval      string `json:"interval,omitempty"`
	ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
	HonorLabels   bool   `json:"honorLabels,omitempty"`
}

var promDuration = regexp.MustCompile(`^(([0-9]+)(y|w|d|h|m|s|ms))+$`)

func (s *serviceMonitor) check() error {
	if len(s.Spec.Selector.MatchLabels) == 0 && len(s.Spec.Selector.MatchExpressions) == 0 {
		return fmt.Errorf("spec.selector: empty selects every Service")
	}
	if len(s.Spec.Endpoints) == 0 {
		return fmt.Errorf("spec.endpoints: required")
	}
	for i, e := range s.Spec.Endpoints {
		if e.Port == "" {
			return fmt.Errorf("spec.endpoints[%d].port: required", i)
		}
		for _, d := range []string{e.Interval, e.ScrapeTimeout} {
			if d != "" && !promDuration.MatchString(d) {
				return fmt.Errorf("spec.endpoints[%d]: %q is not a Prometheus duration", i, d)
			}
		}
	}
	return nil
}

type prometheusRule struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Groups []ruleGroup `json:"groups"`
	} `json:"spec"`
}

type ruleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Rules    []rule `json:"rules"`
}

type rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func (p *prometheusRule) check() error {
	if len(p.Spec.Groups) == 0 {
		return fmt.Errorf("spec.groups: required")
	}
	for i, g := range p.Spec.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			return fmt.Errorf("spec.groups[%d]: name and rules are required", i)
		}
		for j, r := range g.Rules {
			path := fmt.Sprintf("spec.groups[%d].rules[%d]", i, j)
			switch {
			case (r.Alert == "") == (r.Record == ""):
				return fmt.Errorf("%s: exactly one of alert and record", path)
			case strings.TrimSpace(r.Expr) == "":
				return fmt.Errorf("%s: expr required", path)
			case r.For != "" && !promDuration.MatchString(r.For):
				return fmt.Errorf("%s.for: %q is not a Prometheus duration", path, r.For)
			case r.Alert != "" && (r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == ""):
				return fmt.Errorf("%s (%s): labels.severity, annotations.summary and annotations.description are required", path, r.Alert)
			}
			if err := balanced(r.Expr); err != nil {
				return fmt.Errorf("%s.expr: %v", path, err)
			}
		}
	}
	return nil
}

// balanced is a cheap PromQL sanity check: brackets pair up outside quotes.
func balanced(expr string) error {
	var stack []rune
	pair := map[rune]rune{')': '(', ']': '[', '}': '{'}
	var quote rune
	for _, c := range expr {
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'' || c == '`':
			quote = c
		case c == '(' || c == '[' || c == '{':
			stack = append(stack, c)
		case pair[c] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pair[c] {
				return fmt.Errorf("unbalanced %q in %q", c, expr)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) > 0 || quote != 0 {
		return fmt.Errorf("unclosed bracket or quote in %q", expr)
	}
	return nil
}

// kindCluster is kind's cluster config (kind.x-k8s.io/v1alpha4).
type kindCluster struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name,omitempty"`
	Nodes      []struct {
		Role                 string   `json:"role"`
		Image                string   `json:"image,omitempty"`
		KubeadmConfigPatches []string `json:"kubeadmConfigPatches,omitempty"`
		ExtraPortMappings    []struct {
			ContainerPort int32  `json:"containerPort"`
			HostPort      int32  `json:"hostPort"`
			ListenAddress string `json:"listenAddress,omitempty"`
			Protocol      string `json:"protocol,omitempty"`
		} `json:"extraPortMappings,omitempty"`
	} `json:"nodes"`
}

// TestKindManifests decodes the kind cluster config and every manifest of
// deploy/kind strictly, and checks that the load test's containers run
// commands changeprop has.
func TestKindManifests(t *testing.T) {
	var files []string
	for _, f := range globFiles(t, "../kind/*.yaml") {
		if !strings.HasPrefix(filepath.Base(f), "values-") { // Helm values: TestChartRenders
			files = append(files, f)
		}
	}
	if len(files) < 3 {
		t.Fatalf("deploy/kind has %d YAML files, want the cluster config, kafka, redis and the load test", len(files))
	}
	kinds := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// The cluster config's metadata-less shape: kind's Cluster has a
		// top-level name, not metadata.name.
		if bytes.Contains(data, []byte("kind.x-k8s.io/")) {
			var c kindCluster
			if err := yaml.UnmarshalStrict(data, &c); err != nil {
				t.Errorf("%s: %v", f, err)
			} else if c.Kind != "Cluster" || len(c.Nodes) == 0 {
				t.Errorf("%s: want a kind Cluster with nodes", f)
			}
			continue
		}
		objs, err := decodeStream(f, data)
		if err != nil {
			t.Error(err)
		}
		for _, o := range objs {
			kinds[o.kind] = true
			for _, c := range podContainers(o.value) {
				if len(c.Command) > 0 && c.Command[0] == "/usr/local/bin/changeprop" {
					if len(c.Args) == 0 || !knownCommands[c.Args[0]] {
						t.Errorf("%s: container %s runs changeprop %q: not a changeprop command", o.source, c.Name, c.Args)
					}
				}
			}
		}
	}
	for _, k := range []string{"Job", "Deployment", "Service"} {
		if !kinds[k] {
			t.Errorf("deploy/kind has no %s", k)
		}
	}
}

// knownCommands are the commands of cmd/changeprop/main.go.
var knownCommands = map[string]bool{"run": true, "validate": true, "dev": true, "replay": true, "loadgen": true, "jobrunner-sim": true}

// podContainers returns the containers of a workload object.
func podContainers(v any) []corev1.Container {
	var spec *corev1.PodSpec
	switch o := v.(type) {
	case *appsv1.Deployment:
		spec = &o.Spec.Template.Spec
	case *appsv1.StatefulSet:
		spec = &o.Spec.Template.Spec
	case *batchv1.Job:
		spec = &o.Spec.Template.Spec
	case *corev1.Pod:
		spec = &o.Spec
	default:
		return nil
	}
	return append(append([]corev1.Container(nil), spec.InitContainers...), spec.Containers...)
}

// TestStrictDecodeFails proves the decoding is strict: a misspelt field, a
// field of the wrong type and a kind without an API type all fail.
func TestStrictDecodeFails(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"unknown field", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {selector: {a: b}, prots: []}\n", "prots"},
		{"misplaced field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      terminationGracePeriod: 30\n", "terminationGracePeriod"},
		{"wrong type", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: [1]}\n", "ConfigMap"},
		{"unknown kind", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: x}\n", "no API type"},
		{"CRD field", "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\nspec: {selector: {matchLabels: {a: b}}, endpoints: [{port: http, intervall: 30s}]}\n", "intervall"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeStream(tc.name, []byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("decode: %v; want an error naming %q", err, tc.want)
			}
		})
	}
}
