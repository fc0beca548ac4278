// Package deploytest holds the offline checks of deploy/: nothing but tests.
//
// The Helm chart (deploy/helm/changeprop) is rendered through Helm's own Go
// packages (chart loader, values coalescing, template engine: what `helm
// template` does, without a cluster) for the default values and for each
// values-*.yaml; every rendered object must decode strictly (unknown fields
// are errors) into its Kubernetes API type, and the rendered changeprop
// config must pass rules.Load. The metric names of the Grafana dashboards
// (deploy/grafana) and of the alert rules (deploy/prometheus) must be
// metrics the service registers, with the labels it gives them. The kind
// manifests (deploy/kind) decode strictly too. docs/operations.md's metrics
// and endpoints tables must list exactly what the service registers and
// serves.
//
//	go test ./deploy/...
package deploytest
