package deploytest

import (
	"fmt"
	"maps"
	"math"
	"net"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"changeprop/rules"
)

const chartDir = "../helm/changeprop"

// render is `helm template rel chartDir -n changeprop -f valuesFile --set
// ...`: the chart loaded, the values file merged over the chart's defaults
// (nulls delete defaults, as helm does), then set over that, and every
// template rendered by Helm's engine in strict mode (a reference to a value
// that does not exist is an error). It returns the rendered manifests by
// template path, without NOTES.txt and empty files.
func render(t *testing.T, valuesFile string, set map[string]any) (map[string]string, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	vals := map[string]any{}
	if valuesFile != "" {
		v, err := chartutil.ReadValuesFile(valuesFile)
		if err != nil {
			t.Fatalf("%s: %v", valuesFile, err)
		}
		vals = v
	}
	vals = mergeValues(vals, set)
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{
		Name: "cp", Namespace: "changeprop", Revision: 1, IsInstall: true,
	}, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	out, err := engine.Engine{Strict: true}.Render(ch, rv)
	if err != nil {
		return nil, err
	}
	manifests := map[string]string{}
	for name, text := range out {
		if strings.HasSuffix(name, "NOTES.txt") || isBlankYAML(text) {
			continue
		}
		manifests[name] = text
	}
	return manifests, nil
}

// mergeValues merges b over a as `helm -f a --set b` does: maps merge
// key by key, anything else replaces.
func mergeValues(a, b map[string]any) map[string]any {
	out := maps.Clone(a)
	for k, v := range b {
		if bm, ok := v.(map[string]any); ok {
			if am, ok := out[k].(map[string]any); ok {
				out[k] = mergeValues(am, bm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// release is a rendered chart, decoded.
type release struct {
	objects    []object
	deployment *appsv1.Deployment
	configMap  *corev1.ConfigMap
	service    *corev1.Service
	pdb        *policyv1.PodDisruptionBudget
	hpa        *autoscalingv2.HorizontalPodAutoscaler
	monitor    *serviceMonitor
	config     *rules.Config // the ConfigMap's config.yaml, loaded
}

// decodeRelease decodes every rendered manifest strictly and picks out the
// objects the chart makes.
func decodeRelease(t *testing.T, manifests map[string]string) *release {
	t.Helper()
	rel := &release{}
	names := slices.Sorted(maps.Keys(manifests))
	for _, name := range names {
		objs, err := decodeStream(name, []byte(manifests[name]))
		if err != nil {
			t.Errorf("strict decode:\n%v\n--- rendered:\n%s", err, manifests[name])
		}
		rel.objects = append(rel.objects, objs...)
	}
	count := map[string]int{}
	for _, o := range rel.objects {
		count[o.kind]++
		switch v := o.value.(type) {
		case *appsv1.Deployment:
			rel.deployment = v
		case *corev1.ConfigMap:
			rel.configMap = v
		case *corev1.Service:
			rel.service = v
		case *policyv1.PodDisruptionBudget:
			rel.pdb = v
		case *autoscalingv2.HorizontalPodAutoscaler:
			rel.hpa = v
		case *serviceMonitor:
			rel.monitor = v
		}
	}
	for k, n := range count {
		if n > 1 {
			t.Errorf("%d objects of kind %s, want at most one", n, k)
		}
	}
	if rel.configMap != nil {
		data, ok := rel.configMap.Data["config.yaml"]
		if !ok {
			t.Fatalf("ConfigMap %s has no config.yaml (keys %v)", rel.configMap.Name, slices.Collect(maps.Keys(rel.configMap.Data)))
		}
		cfg, err := rules.Load([]byte(data), nil)
		if err != nil {
			t.Fatalf("the ConfigMap's config.yaml fails rules.Load:\n%v\n--- config.yaml:\n%s", err, data)
		}
		rel.config = cfg
	}
	return rel
}

// TestChartRenders renders the chart for its default values and for each
// values-*.yaml, decodes every object strictly into its Kubernetes type,
// loads the embedded changeprop config with rules.Load, and checks that
// the objects fit together.
func TestChartRenders(t *testing.T) {
	files := append([]string{""}, globFiles(t, filepath.Join(chartDir, "values-*.yaml"))...)
	if len(files) < 3 {
		t.Fatalf("want values-jobqueue.yaml and values-changeprop.yaml, have %v", files[1:])
	}
	files = append(files, "../kind/values-kind.yaml")
	for _, f := range files {
		name := filepath.Base(f)
		if f == "" {
			name = "defaults"
		}
		t.Run(name, func(t *testing.T) {
			manifests, err := render(t, f, nil)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			rel := decodeRelease(t, manifests)
			checkRelease(t, rel)
			if name == "values-jobqueue.yaml" || name == "values-changeprop.yaml" {
				if rel.monitor == nil {
					t.Errorf("%s: no ServiceMonitor", name)
				}
				// The install is a production-shaped rule set: the job
				// queue's of rules/testdata, the change propagation sample
				// of deploy/examples (the one its test runs); the same
				// rules, none of the chart's samples.
				source := map[string]string{
					"values-jobqueue.yaml":   "../../rules/testdata/jobqueue.yaml",
					"values-changeprop.yaml": "../examples/changeprop.yaml",
				}[name]
				want, err := rules.Load(readFile(t, source), nil)
				if err != nil {
					t.Fatalf("%s: %v", source, err)
				}
				if got, exp := ruleNames(rel.config), ruleNames(want); !slices.Equal(got, exp) {
					t.Errorf("%s: rules %v, want those of %s: %v", name, got, source, exp)
				}
			}
		})
	}
}

// checkRelease checks what the chart promises of every install.
func checkRelease(t *testing.T, rel *release) {
	t.Helper()
	d, cm, svc := rel.deployment, rel.configMap, rel.service
	if d == nil || cm == nil || svc == nil || rel.pdb == nil {
		t.Fatalf("want a Deployment, ConfigMap, Service and PodDisruptionBudget; have %v", kinds(rel.objects))
	}
	cfg := rel.config
	pod := d.Spec.Template
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("want one container, have %d", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]

	// The command line: the binary named (the image's entrypoint is
	// "changeprop run"), then run -config on the mounted file.
	if !slices.Equal(c.Command, []string{"/usr/local/bin/changeprop"}) {
		t.Errorf("command %q, want the changeprop binary", c.Command)
	}
	if len(c.Args) < 3 || !slices.Equal(c.Args[:3], []string{"run", "-config", "/etc/changeprop/config.yaml"}) {
		t.Errorf("args %q, want run -config /etc/changeprop/config.yaml ...", c.Args)
	}
	if c.Image == "" || strings.HasSuffix(c.Image, ":") {
		t.Errorf("image %q", c.Image)
	}

	// The listener: config listen is 0.0.0.0:<containerPort>, and the
	// probes, Service and ServiceMonitor reach that port.
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil || host != "0.0.0.0" {
		t.Errorf("config listen %q, want 0.0.0.0:PORT so the kubelet and Prometheus reach it", cfg.Listen)
	}
	if len(c.Ports) != 1 || fmt.Sprint(c.Ports[0].ContainerPort) != portStr || c.Ports[0].Name != "http" {
		t.Errorf("container ports %+v, want one named http on %s", c.Ports, portStr)
	}
	probe := func(what string, p *corev1.Probe, path string) {
		switch {
		case p == nil || p.HTTPGet == nil:
			t.Errorf("%s probe: want an HTTP GET of %s", what, path)
		case p.HTTPGet.Path != path || p.HTTPGet.Port != intstr.FromString("http"):
			t.Errorf("%s probe: GET %s on %s, want %s on the http port", what, p.HTTPGet.Path, p.HTTPGet.Port.String(), path)
		}
	}
	probe("liveness", c.LivenessProbe, "/healthz")
	probe("readiness", c.ReadinessProbe, "/readyz")
	probe("startup", c.StartupProbe, "/healthz")
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort != intstr.FromString("http") || fmt.Sprint(svc.Spec.Ports[0].Port) != portStr {
		t.Errorf("service ports %+v, want %s to the http port", svc.Spec.Ports, portStr)
	}
	if m := rel.monitor; m != nil {
		if m.Spec.Endpoints[0].Port != svc.Spec.Ports[0].Name || m.Spec.Endpoints[0].Path != "/metrics" {
			t.Errorf("ServiceMonitor endpoint %+v, want /metrics on port %q", m.Spec.Endpoints[0], svc.Spec.Ports[0].Name)
		}
		checkSelects(t, "ServiceMonitor", m.Spec.Selector.MatchLabels, svc.Labels)
	}

	// Graceful termination outlasts shutdown_timeout.
	grace := d.Spec.Template.Spec.TerminationGracePeriodSeconds
	if grace == nil || float64(*grace) <= math.Ceil(cfg.ShutdownTimeout.Seconds()) {
		t.Errorf("terminationGracePeriodSeconds %v, want more than shutdown_timeout %v", deref(grace), cfg.ShutdownTimeout)
	}

	// Not root, no privilege escalation, resources set.
	psc, sc := pod.Spec.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("pod securityContext %+v, want runAsNonRoot and a non-zero runAsUser", psc)
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("container securityContext %+v, want no privilege escalation and a read-only root", sc)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v, want cpu and memory requests and a memory limit", c.Resources)
	}

	// The config file comes from the ConfigMap, mounted as a directory so
	// that updates reach the pod (changeprop re-reads it live).
	var vol *corev1.Volume
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].ConfigMap != nil {
			vol = &pod.Spec.Volumes[i]
		}
	}
	if vol == nil || vol.ConfigMap.Name != cm.Name {
		t.Errorf("no volume of ConfigMap %s", cm.Name)
	} else {
		mounted := false
		for _, m := range c.VolumeMounts {
			if m.Name == vol.Name && m.MountPath == "/etc/changeprop" && m.SubPath == "" {
				mounted = true
			}
		}
		if !mounted {
			t.Errorf("ConfigMap volume not mounted at /etc/changeprop without subPath: %+v", c.VolumeMounts)
		}
	}

	// Selectors select the pods.
	checkSelects(t, "Deployment", d.Spec.Selector.MatchLabels, pod.Labels)
	checkSelects(t, "Service", svc.Spec.Selector, pod.Labels)
	checkSelects(t, "PodDisruptionBudget", rel.pdb.Spec.Selector.MatchLabels, pod.Labels)
	if rel.hpa != nil {
		if d.Spec.Replicas != nil {
			t.Errorf("Deployment sets replicas while the HPA owns them")
		}
		if ref := rel.hpa.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != d.Name {
			t.Errorf("HPA targets %s %s, want Deployment %s", ref.Kind, ref.Name, d.Name)
		}
	}
}

func checkSelects(t *testing.T, what string, selector, labels map[string]string) {
	t.Helper()
	if len(selector) == 0 {
		t.Errorf("%s: empty selector", what)
	}
	for k, v := range selector {
		if labels[k] != v {
			t.Errorf("%s selects %s=%s; the target has %v", what, k, v, labels)
		}
	}
}

// TestChartOptions renders the switches of values.yaml: the HPA, a config
// from an existing Secret, shutdown_timeout spellings, and the errors the
// chart reports.
func TestChartOptions(t *testing.T) {
	t.Run("hpa", func(t *testing.T) {
		m, err := render(t, filepath.Join(chartDir, "values-jobqueue.yaml"), map[string]any{
			"autoscaling": map[string]any{"enabled": true}})
		if err != nil {
			t.Fatal(err)
		}
		rel := decodeRelease(t, m)
		checkRelease(t, rel)
		if rel.hpa == nil {
			t.Fatal("no HorizontalPodAutoscaler")
		}
		ms := rel.hpa.Spec.Metrics
		if len(ms) != 1 || ms[0].External == nil || ms[0].External.Metric.Name != "changeprop_partition_lag" ||
			ms[0].External.Target.Type != autoscalingv2.AverageValueMetricType {
			t.Errorf("HPA metrics %+v, want an External changeprop_partition_lag AverageValue target", ms)
		}
	})
	t.Run("existingConfigSecret", func(t *testing.T) {
		m, err := render(t, "", map[string]any{"existingConfigSecret": "cp-config", "rollOnConfigChange": true})
		if err != nil {
			t.Fatal(err)
		}
		rel := decodeRelease(t, m)
		if rel.configMap != nil {
			t.Error("a ConfigMap is rendered although the config comes from a Secret")
		}
		v := rel.deployment.Spec.Template.Spec.Volumes
		if len(v) != 1 || v[0].Secret == nil || v[0].Secret.SecretName != "cp-config" {
			t.Errorf("volumes %+v, want Secret cp-config", v)
		}
	})
	t.Run("secrets", func(t *testing.T) {
		m, err := render(t, "", map[string]any{
			"config": map[string]any{
				"kafka": map[string]any{
					"properties":         map[string]any{"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "changeprop"},
					"sasl_password_file": "/etc/changeprop-secrets/kafka/password",
				},
				"admin": map[string]any{"token_file": "/etc/changeprop-secrets/admin/token"},
			},
			"secretMounts": []any{
				map[string]any{"name": "kafka", "secretName": "cp-kafka", "mountPath": "/etc/changeprop-secrets/kafka"},
				map[string]any{"name": "admin", "secretName": "cp-admin", "mountPath": "/etc/changeprop-secrets/admin"},
			},
			"env": []any{map[string]any{"name": "CHANGEPROP_REDIS_PASSWORD",
				"valueFrom": map[string]any{"secretKeyRef": map[string]any{"name": "cp-redis", "key": "password"}}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		rel := decodeRelease(t, m)
		checkRelease(t, rel)
		pod := rel.deployment.Spec.Template.Spec
		secrets := map[string]string{}
		for _, v := range pod.Volumes {
			if v.Secret != nil {
				secrets[v.Name] = v.Secret.SecretName
				if deref(v.Secret.DefaultMode)&0o040 == 0 {
					t.Errorf("volume %s: mode %o is not readable by the pod's group", v.Name, deref(v.Secret.DefaultMode))
				}
			}
		}
		mounts := map[string]string{}
		for _, vm := range pod.Containers[0].VolumeMounts {
			if !vm.ReadOnly {
				t.Errorf("mount %s is writable", vm.Name)
			}
			mounts[vm.Name] = vm.MountPath
		}
		if secrets["secret-kafka"] != "cp-kafka" || secrets["secret-admin"] != "cp-admin" ||
			mounts["secret-kafka"] != "/etc/changeprop-secrets/kafka" || mounts["secret-admin"] != "/etc/changeprop-secrets/admin" {
			t.Errorf("secret volumes %v mounted at %v", secrets, mounts)
		}
		env := pod.Containers[0].Env
		if len(env) != 1 || env[0].ValueFrom == nil || env[0].ValueFrom.SecretKeyRef == nil || env[0].ValueFrom.SecretKeyRef.Name != "cp-redis" {
			t.Errorf("env %+v, want CHANGEPROP_REDIS_PASSWORD from Secret cp-redis", env)
		}
		if rel.config.Admin.Pprof != true || rel.config.Kafka.Properties["sasl.username"] != "changeprop" {
			t.Errorf("the rendered config lost its security settings: %+v", rel.config.Kafka)
		}
	})
	t.Run("rollOnConfigChange", func(t *testing.T) {
		m, err := render(t, "", map[string]any{"rollOnConfigChange": true})
		if err != nil {
			t.Fatal(err)
		}
		if a := decodeRelease(t, m).deployment.Spec.Template.Annotations["checksum/config"]; len(a) != 64 {
			t.Errorf("checksum/config annotation %q", a)
		}
	})
	for _, tc := range []struct {
		timeout any // config.shutdown_timeout
		extra   int
		want    int64
	}{
		{nil, 15, 45},
		{"45s", 15, 60},
		{"1m30s", 10, 100},
		{"1.5s", 1, 3},
		{"2m", 30, 150},
		{"500ms", 15, 16},
		{float64(45000), 15, 60}, // an integer is milliseconds
	} {
		t.Run(fmt.Sprintf("grace/%v", tc.timeout), func(t *testing.T) {
			cfg := map[string]any{}
			if tc.timeout != nil {
				cfg["shutdown_timeout"] = tc.timeout
			}
			m, err := render(t, "", map[string]any{"config": cfg, "terminationGraceExtraSeconds": tc.extra})
			if err != nil {
				t.Fatal(err)
			}
			rel := decodeRelease(t, m)
			if got := deref(rel.deployment.Spec.Template.Spec.TerminationGracePeriodSeconds); got != tc.want {
				t.Errorf("terminationGracePeriodSeconds %d, want %d", got, tc.want)
			}
			checkRelease(t, rel)
		})
	}
	for _, tc := range []struct {
		name string
		set  map[string]any
		want string
	}{
		{"listen elsewhere", map[string]any{"config": map[string]any{"listen": "127.0.0.1:7200"}}, "config.listen"},
		{"bad duration", map[string]any{"config": map[string]any{"shutdown_timeout": "30 seconds"}}, "shutdown_timeout"},
		{"secret over the config", map[string]any{"secretMounts": []any{
			map[string]any{"name": "kafka", "secretName": "cp-kafka", "mountPath": "/etc/changeprop/kafka"}}}, "inside the config's directory"},
	} {
		t.Run("fails/"+tc.name, func(t *testing.T) {
			_, err := render(t, "", tc.set)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("render error %v, want one naming %s", err, tc.want)
			}
		})
	}
	t.Run("port", func(t *testing.T) {
		m, err := render(t, "", map[string]any{"port": 8080})
		if err != nil {
			t.Fatal(err)
		}
		rel := decodeRelease(t, m)
		checkRelease(t, rel)
		if rel.config.Listen != "0.0.0.0:8080" {
			t.Errorf("listen %q", rel.config.Listen)
		}
	})
}

func ruleNames(c *rules.Config) []string {
	var out []string
	for _, r := range c.Rules {
		out = append(out, r.Name)
	}
	sort.Strings(out)
	return out
}

func kinds(objs []object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.kind)
	}
	return out
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
