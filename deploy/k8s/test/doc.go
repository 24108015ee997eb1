// Package test builds the Kustomize overlays of deploy/k8s and checks
// every manifest against the Kubernetes API types; it holds only tests.
// It is its own module (not in go.work) so that the Kubernetes and
// Kustomize dependencies stay out of the services' modules.
package test
