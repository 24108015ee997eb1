package test

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// services are the three Deployments and their ports (SPEC §6).
var services = map[string]struct{ grpc, http int32 }{
	"ingester": {7001, 8001},
	"rules":    {7002, 8002},
	"alerts":   {7003, 8003},
}

// autoscaled are the Deployments with an HPA; rules is not (its pods are
// bounded by the partitions of its input topic).
var autoscaled = []string{"ingester", "alerts"}

// specSecurity are the SPEC §6 security settings. Some are read by code
// still on the sectls / secauth branches; a manifest may set them before
// they are merged. Every other CHURNWATCH_ name must be read by the code.
var specSecurity = []string{
	"CHURNWATCH_TLS_CERT", "CHURNWATCH_TLS_KEY", "CHURNWATCH_TLS_CLIENT_CA",
	"CHURNWATCH_AUTH_PUBLIC_KEYS", "CHURNWATCH_AUTH_JWKS_URL",
	"CHURNWATCH_AUTH_ISSUER", "CHURNWATCH_AUTH_AUDIENCE", "CHURNWATCH_AUTH_MAX_TTL",
	"CHURNWATCH_KAFKA_TLS_CA", "CHURNWATCH_KAFKA_TLS_CERT", "CHURNWATCH_KAFKA_TLS_KEY",
	"CHURNWATCH_KAFKA_SASL_MECHANISM", "CHURNWATCH_KAFKA_SASL_USERNAME", "CHURNWATCH_KAFKA_SASL_PASSWORD_FILE",
	"CHURNWATCH_REDIS_ADDR", "CHURNWATCH_REDIS_USERNAME", "CHURNWATCH_REDIS_PASSWORD_FILE", "CHURNWATCH_REDIS_TLS_CA",
}

// built is one overlay's output, decoded into the API types.
type built struct {
	deployments  map[string]*appsv1.Deployment
	services     map[string]*corev1.Service
	pdbs         map[string]*policyv1.PodDisruptionBudget
	hpas         map[string]*autoscalingv2.HorizontalPodAutoscaler
	policies     map[string]*networkingv1.NetworkPolicy
	configMaps   map[string]*corev1.ConfigMap
	resourceKeys []string
}

// build runs kustomize on an overlay the way `kubectl apply -k` would and
// decodes every document strictly: an unknown or misspelt field, or a
// kind this test does not know, fails.
func build(t *testing.T, dir string) *built {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	b := &built{deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		policies: map[string]*networkingv1.NetworkPolicy{}, configMaps: map[string]*corev1.ConfigMap{}}
	for _, r := range rm.Resources() {
		doc, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		gvk := r.GetGvk()
		key := gvk.ApiVersion() + "/" + gvk.Kind + "/" + r.GetName()
		b.resourceKeys = append(b.resourceKeys, key)
		var target any
		name := r.GetName()
		switch gvk.ApiVersion() + " " + gvk.Kind {
		case "apps/v1 Deployment":
			o := &appsv1.Deployment{}
			b.deployments[name], target = o, o
		case "v1 Service":
			o := &corev1.Service{}
			b.services[name], target = o, o
		case "policy/v1 PodDisruptionBudget":
			o := &policyv1.PodDisruptionBudget{}
			b.pdbs[name], target = o, o
		case "autoscaling/v2 HorizontalPodAutoscaler":
			o := &autoscalingv2.HorizontalPodAutoscaler{}
			b.hpas[name], target = o, o
		case "networking.k8s.io/v1 NetworkPolicy":
			o := &networkingv1.NetworkPolicy{}
			b.policies[name], target = o, o
		case "v1 ConfigMap":
			o := &corev1.ConfigMap{}
			b.configMaps[name], target = o, o
		case "v1 Secret":
			t.Errorf("%s: a Secret in the build; secrets are made by the platform, never kept in the repository", key)
			continue
		default:
			t.Errorf("%s: a kind this test does not check", key)
			continue
		}
		if err := yaml.UnmarshalStrict(doc, target); err != nil {
			t.Errorf("%s does not decode strictly as %s: %v\n%s", key, gvk.Kind, err, doc)
		}
	}
	return b
}

func TestOverlays(t *testing.T) {
	read := codeNames(t)
	for _, overlay := range []string{"dev", "prod"} {
		t.Run(overlay, func(t *testing.T) {
			b := build(t, filepath.Join("..", "overlays", overlay))
			checkWorkloads(t, b, overlay, read)
			checkNetworkPolicies(t, b)
		})
	}
}

func checkWorkloads(t *testing.T, b *built, overlay string, read map[string]bool) {
	for name, ports := range services {
		d := b.deployments[name]
		if d == nil {
			t.Errorf("no Deployment %s", name)
			continue
		}
		if d.Namespace == "" {
			t.Errorf("%s: no namespace", name)
		}
		pod := d.Spec.Template.Spec
		if !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
			t.Errorf("%s: selector %v does not select its pods %v", name, d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
		}
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Errorf("%s: the pod mounts a service account token it does not need", name)
		}
		psc := pod.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: pod securityContext must set runAsNonRoot and seccomp RuntimeDefault: %+v", name, psc)
		}
		if len(pod.InitContainers) > 0 {
			t.Errorf("%s: init containers are not checked; add them to this test", name)
		}
		if len(pod.Containers) != 1 {
			t.Errorf("%s: %d containers", name, len(pod.Containers))
		}
		env := map[string]string{}
		for _, c := range pod.Containers {
			checkContainer(t, name, c, psc)
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
			for _, from := range c.EnvFrom {
				if from.ConfigMapRef == nil {
					t.Errorf("%s: envFrom other than a ConfigMap", name)
					continue
				}
				cm := b.configMaps[from.ConfigMapRef.Name]
				if cm == nil {
					t.Errorf("%s: ConfigMap %s is not in the build", name, from.ConfigMapRef.Name)
					continue
				}
				for k, v := range cm.Data {
					env[k] = v
				}
			}
			if got := env["CHURNWATCH_GRPC_ADDR"]; got != fmt.Sprintf("0.0.0.0:%d", ports.grpc) {
				t.Errorf("%s: CHURNWATCH_GRPC_ADDR %q: the pod must listen on 0.0.0.0:%d", name, got, ports.grpc)
			}
			if got := env["CHURNWATCH_HTTP_ADDR"]; got != fmt.Sprintf(":%d", ports.http) {
				t.Errorf("%s: CHURNWATCH_HTTP_ADDR %q, want :%d", name, got, ports.http)
			}
			checkPorts(t, name, c, ports.grpc, ports.http)
			checkEnv(t, name, env, read)
			checkFiles(t, name, env, c, pod.Volumes)
			// A service with TLS on its HTTP port must be probed over HTTPS.
			wantScheme := corev1.URISchemeHTTP
			if env["CHURNWATCH_TLS_CERT"] != "" {
				wantScheme = corev1.URISchemeHTTPS
			}
			for what, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
				if p != nil && p.HTTPGet != nil && scheme(p.HTTPGet.Scheme) != wantScheme {
					t.Errorf("%s: %s probe over %s, the port serves %s", name, what, scheme(p.HTTPGet.Scheme), wantScheme)
				}
			}
		}
		if overlay == "prod" && (d.Spec.Replicas == nil || *d.Spec.Replicas < 2) {
			t.Errorf("%s: fewer than 2 replicas in prod", name)
		}
		if overlay == "prod" && env["CHURNWATCH_TLS_CERT"] == "" {
			t.Errorf("%s: no TLS in prod", name)
		}

		svc := b.services[name]
		if svc == nil {
			t.Errorf("no Service %s", name)
		} else {
			if !selects(svc.Spec.Selector, d.Spec.Template.Labels) {
				t.Errorf("Service %s selects %v, not its pods", name, svc.Spec.Selector)
			}
			var got []int32
			for _, p := range svc.Spec.Ports {
				got = append(got, p.Port)
			}
			slices.Sort(got)
			if !slices.Equal(got, []int32{ports.grpc, ports.http}) {
				t.Errorf("Service %s ports %v", name, got)
			}
		}
		pdb := b.pdbs[name]
		if pdb == nil || pdb.Spec.Selector == nil || !selects(pdb.Spec.Selector.MatchLabels, d.Spec.Template.Labels) ||
			(pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil) {
			t.Errorf("no PodDisruptionBudget for %s: %+v", name, pdb)
		}
		hpa := b.hpas[name]
		switch {
		case slices.Contains(autoscaled, name) && hpa == nil:
			t.Errorf("no HorizontalPodAutoscaler for %s", name)
		case !slices.Contains(autoscaled, name) && hpa != nil:
			t.Errorf("HorizontalPodAutoscaler for %s, which must not autoscale", name)
		case hpa != nil:
			ref := hpa.Spec.ScaleTargetRef
			if ref.Kind != "Deployment" || ref.Name != name || hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas > hpa.Spec.MaxReplicas || len(hpa.Spec.Metrics) == 0 {
				t.Errorf("HPA %s: %+v", name, hpa.Spec)
			}
		}
	}
}

func scheme(s corev1.URIScheme) corev1.URIScheme {
	if s == "" {
		return corev1.URISchemeHTTP
	}
	return s
}

func checkContainer(t *testing.T, name string, c corev1.Container, pod *corev1.PodSecurityContext) {
	t.Helper()
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Errorf("%s/%s: no securityContext", name, c.Name)
		return
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Errorf("%s/%s: runAsNonRoot not set", name, c.Name)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("%s/%s: readOnlyRootFilesystem not set", name, c.Name)
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("%s/%s: allowPrivilegeEscalation not false", name, c.Name)
	case sc.Privileged != nil && *sc.Privileged:
		t.Errorf("%s/%s: privileged", name, c.Name)
	case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0:
		t.Errorf("%s/%s: capabilities must drop ALL and add none: %+v", name, c.Name, sc.Capabilities)
	case sc.SeccompProfile != nil && sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("%s/%s: seccomp %s", name, c.Name, sc.SeccompProfile.Type)
	case sc.SeccompProfile == nil && (pod == nil || pod.SeccompProfile == nil):
		t.Errorf("%s/%s: no seccomp profile", name, c.Name)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := c.Resources.Requests[r]
		lim, okLim := c.Resources.Limits[r]
		if !okReq || !okLim || req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
			t.Errorf("%s/%s: %s request %v and limit %v must both be set, request ≤ limit", name, c.Name, r, req.String(), lim.String())
		}
	}
	for what, want := range map[string]string{"startup": "/healthz", "liveness": "/healthz", "readiness": "/readyz"} {
		p := map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe}[what]
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want || p.HTTPGet.Port.String() != "http" {
			t.Errorf("%s/%s: %s probe must be httpGet %s on port http: %+v", name, c.Name, what, want, p)
		}
	}
	if c.Image == "" || strings.HasSuffix(c.Image, ":latest") || !strings.Contains(path.Base(c.Image), ":") {
		t.Errorf("%s/%s: image %q must carry a tag other than latest", name, c.Name, c.Image)
	}
}

func checkPorts(t *testing.T, name string, c corev1.Container, grpc, http int32) {
	t.Helper()
	got := map[string]int32{}
	for _, p := range c.Ports {
		got[p.Name] = p.ContainerPort
	}
	if got["grpc"] != grpc || got["http"] != http || len(got) != 2 {
		t.Errorf("%s: container ports %v, want grpc %d and http %d", name, got, grpc, http)
	}
}

// checkEnv: every CHURNWATCH_ setting is one the code reads (or a SPEC
// §6 security setting), and no secret is given as a value.
func checkEnv(t *testing.T, name string, env map[string]string, read map[string]bool) {
	t.Helper()
	for k, v := range env {
		if strings.HasPrefix(k, "CHURNWATCH_") && !read[k] && !slices.Contains(specSecurity, k) {
			t.Errorf("%s: %s is read nowhere in services/ (a typo is silently ignored)", name, k)
		}
		if (strings.Contains(k, "PASSWORD") || strings.Contains(k, "SECRET") || strings.Contains(k, "TOKEN")) && !strings.HasSuffix(k, "_FILE") {
			t.Errorf("%s: %s carries a secret as a value; use the …_FILE setting and a Secret volume", name, k)
		}
		if strings.Contains(v, "://") && strings.Contains(v, "@") {
			t.Errorf("%s: %s holds credentials in a URL", name, k)
		}
	}
}

// checkFiles: every file a setting names under /etc/churnwatch is there:
// a volume is mounted on its directory and projects that file.
func checkFiles(t *testing.T, name string, env map[string]string, c corev1.Container, volumes []corev1.Volume) {
	t.Helper()
	byName := map[string]corev1.Volume{}
	for _, v := range volumes {
		byName[v.Name] = v
	}
	for k, v := range env {
		for _, f := range strings.Split(v, ",") {
			if !strings.HasPrefix(f, "/etc/churnwatch/") {
				continue
			}
			dir, file := path.Split(f)
			found := false
			for _, m := range c.VolumeMounts {
				if strings.TrimSuffix(m.MountPath, "/")+"/" != dir {
					continue
				}
				if !m.ReadOnly {
					t.Errorf("%s: %s mounted writable", name, m.MountPath)
				}
				vol, ok := byName[m.Name]
				if !ok || vol.Secret == nil {
					t.Errorf("%s: mount %s is not a Secret volume", name, m.Name)
					continue
				}
				for _, it := range vol.Secret.Items {
					found = found || it.Path == file
				}
			}
			if !found {
				t.Errorf("%s: %s=%s, but no Secret volume provides %s", name, k, f, f)
			}
		}
	}
}

func checkNetworkPolicies(t *testing.T, b *built) {
	var deny *networkingv1.NetworkPolicy
	for _, p := range b.policies {
		if len(p.Spec.PodSelector.MatchLabels) == 0 && len(p.Spec.PodSelector.MatchExpressions) == 0 &&
			len(p.Spec.Ingress) == 0 && len(p.Spec.Egress) == 0 &&
			slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) && slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
			deny = p
		}
	}
	if deny == nil {
		t.Fatal("no default-deny NetworkPolicy (empty podSelector, Ingress and Egress, no rules)")
	}
	// Ingress to each service only on its own ports, and some ingress to
	// each (else it is unreachable).
	for name, ports := range services {
		labels := b.deployments[name].Spec.Template.Labels
		open := map[int32]bool{}
		for _, p := range b.policies {
			if !selects(p.Spec.PodSelector.MatchLabels, labels) {
				continue
			}
			for _, rule := range p.Spec.Ingress {
				if len(rule.Ports) == 0 {
					t.Errorf("NetworkPolicy %s opens every port of %s", p.Name, name)
				}
				for _, pp := range rule.Ports {
					if pp.Port == nil {
						t.Errorf("NetworkPolicy %s: a rule without a port on %s", p.Name, name)
						continue
					}
					open[pp.Port.IntVal] = true
				}
			}
			for _, rule := range p.Spec.Egress {
				if len(rule.Ports) == 0 {
					t.Errorf("NetworkPolicy %s: egress of %s to every port", p.Name, name)
				}
			}
		}
		for port := range open {
			if port != ports.grpc && port != ports.http {
				t.Errorf("%s: ingress open on %d", name, port)
			}
		}
		if !open[ports.grpc] || !open[ports.http] {
			t.Errorf("%s: ingress on %d/%d not allowed by any policy (open: %v)", name, ports.grpc, ports.http, open)
		}
	}
}

// selects reports whether selector matches labels (and is not empty).
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// codeNames are the CHURNWATCH_ settings the Go code of services/ reads.
func codeNames(t *testing.T) map[string]bool {
	t.Helper()
	re := regexp.MustCompile(`"(CHURNWATCH_[A-Z0-9_]+)"`)
	names := map[string]bool{}
	root := filepath.Join("..", "..", "..", "services")
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllSubmatch(b, -1) {
			names[string(m[1])] = true
		}
		return nil
	})
	if err != nil || len(names) == 0 {
		t.Fatalf("read the settings of %s: %v", root, err)
	}
	return names
}
