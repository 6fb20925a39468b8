package deploy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	k8syaml "sigs.k8s.io/yaml"

	"github.com/sdevents/sdevents/deploy/internal/crdschema"
	"github.com/sdevents/sdevents/deploy/nack"
	"github.com/sdevents/sdevents/pkg/config"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/streams"
)

// Where the NATS Helm release of deploy/nats/values.yaml runs: the addresses
// in the base (nats.url, KEDA's endpoint) are built from these.
const (
	natsRelease   = "nats"
	natsNamespace = "nats"
)

// kedaNATSJetStreamMetadata are the trigger metadata keys of KEDA's
// nats-jetstream scaler, from natsJetStreamMetadata in
// pkg/scalers/nats_jetstream_scaler.go of github.com/kedacore/keda/v2 v2.21.0
// (the version of testdata/crds/keda-v2.21.0-scaledobjects.yaml). The
// ScaledObject CRD types trigger metadata as a free string map: only the
// scaler knows its keys.
var kedaNATSJetStreamMetadata = []string{
	"account", "accountID", "stream", "consumer", "lagThreshold",
	"activationLagThreshold", "useHttps", "natsServerMonitoringEndpoint",
}

// coreKinds are the kinds the manifests may hold that are decoded strictly
// into their Go API types: the built-in kinds (k8s.io/api) and the
// ServiceMonitor and PrometheusRule of the monitoring component
// (prometheus-operator's monitoring/v1 types, from which its CRDs are
// generated).
var coreKinds = map[string]func() any{
	"networking.k8s.io/v1 NetworkPolicy":      func() any { return &networkingv1.NetworkPolicy{} },
	"monitoring.coreos.com/v1 ServiceMonitor": func() any { return &monitoringv1.ServiceMonitor{} },
	"monitoring.coreos.com/v1 PrometheusRule": func() any { return &monitoringv1.PrometheusRule{} },
	"apps/v1 Deployment":                      func() any { return &appsv1.Deployment{} },
	"v1 Service":                              func() any { return &corev1.Service{} },
	"v1 ConfigMap":                            func() any { return &corev1.ConfigMap{} },
	"v1 Secret":                               func() any { return &corev1.Secret{} },
	"v1 ServiceAccount":                       func() any { return &corev1.ServiceAccount{} },
	"v1 Namespace":                            func() any { return &corev1.Namespace{} },
	"policy/v1 PodDisruptionBudget":           func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2 HorizontalPodAutoscaler":  func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
}

// manifests is a rendered kustomization, decoded.
type manifests struct {
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	pdbs        map[string]*policyv1.PodDisruptionBudget
	hpas        map[string]*autoscalingv2.HorizontalPodAutoscaler
	sas         map[string]*corev1.ServiceAccount
	nss         map[string]*corev1.Namespace
	netpols     map[string]*networkingv1.NetworkPolicy
	monitors    map[string]*monitoringv1.ServiceMonitor
	rules       map[string]*monitoringv1.PrometheusRule
	custom      map[string][]map[string]any // by "apiVersion Kind"
	namespaces  []string                    // of every namespaced object
}

// crdKinds are the custom resources the manifests hold, each validated
// against its CRD in testdata/crds.
var crdKinds = []crdschema.Key{
	"keda.sh/v1alpha1 ScaledObject",
	"jetstream.nats.io/v1beta2 Stream", "jetstream.nats.io/v1beta2 Consumer", "jetstream.nats.io/v1beta2 KeyValue",
}

// crdValidator returns a validator of the CRDs of testdata/crds, as the
// projects publish them, converted to JSON schemas under a temporary
// directory.
func crdValidator(t *testing.T) *crdschema.Validator {
	t.Helper()
	paths, _ := filepath.Glob("testdata/crds/*.y*ml")
	var files []io.Reader
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, bytes.NewReader(b))
	}
	v, err := crdschema.New(t.TempDir(), files...)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range crdKinds {
		if !v.Has(k) {
			t.Fatalf("no CRD for %s in testdata/crds", k)
		}
	}
	return v
}

// kustomizeMu serializes krusty runs: kyaml initializes its global OpenAPI
// schema without a lock, so parallel builds race (as `kubectl kustomize`,
// one build per process, never does).
var kustomizeMu sync.Mutex

// kustomize builds the kustomization in dir and returns the YAML stream.
func kustomize(dir string) ([]byte, error) {
	kustomizeMu.Lock()
	defer kustomizeMu.Unlock()
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	return res.AsYaml()
}

// render builds the kustomization in dir (relative to deploy/) with krusty,
// the engine `kubectl kustomize` embeds, and decodes every document:
// built-in kinds strictly into k8s.io/api types, custom resources against
// their pinned CRD schema. Any other kind is an error.
func render(t *testing.T, dir string) manifests {
	t.Helper()
	out, err := kustomize(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, errs := decodeAll(out, crdValidator(t))
	for _, err := range errs {
		t.Error(err)
	}
	return m
}

// decodeAll decodes a multi-document YAML stream of resources, reporting
// every resource that does not decode strictly or fails its schema.
func decodeAll(stream []byte, crds *crdschema.Validator) (manifests, []error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	m := manifests{
		deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		sas: map[string]*corev1.ServiceAccount{}, nss: map[string]*corev1.Namespace{},
		netpols: map[string]*networkingv1.NetworkPolicy{}, monitors: map[string]*monitoringv1.ServiceMonitor{},
		rules:  map[string]*monitoringv1.PrometheusRule{},
		custom: map[string][]map[string]any{},
	}
	docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			return m, errs
		}
		if err != nil {
			return m, append(errs, err)
		}
		var head struct {
			APIVersion string            `json:"apiVersion"`
			Kind       string            `json:"kind"`
			Metadata   metav1.ObjectMeta `json:"metadata"`
		}
		if err := k8syaml.Unmarshal(doc, &head); err != nil {
			bad("%v", err)
			continue
		}
		key := head.APIVersion + " " + head.Kind
		what := key + " " + head.Metadata.Name
		if head.Kind != "Namespace" {
			m.namespaces = append(m.namespaces, head.Metadata.Namespace)
		}
		if newObj, ok := coreKinds[key]; ok {
			obj := newObj()
			if err := decodeStrict(doc, obj); err != nil {
				bad("%s: %v", what, err)
				continue
			}
			switch o := obj.(type) {
			case *appsv1.Deployment:
				m.deployments[o.Name] = o
			case *corev1.Service:
				m.services[o.Name] = o
			case *corev1.ConfigMap:
				m.configMaps[o.Name] = o
			case *corev1.Secret:
				m.secrets[o.Name] = o
			case *policyv1.PodDisruptionBudget:
				m.pdbs[o.Name] = o
			case *autoscalingv2.HorizontalPodAutoscaler:
				m.hpas[o.Name] = o
			case *corev1.ServiceAccount:
				m.sas[o.Name] = o
			case *corev1.Namespace:
				m.nss[o.Name] = o
			case *networkingv1.NetworkPolicy:
				m.netpols[o.Name] = o
			case *monitoringv1.ServiceMonitor:
				m.monitors[o.Name] = o
			case *monitoringv1.PrometheusRule:
				m.rules[o.Name] = o
			}
			continue
		}
		if !crds.Has(crdschema.Key(key)) {
			bad("%s: no strict check for this kind; add it to coreKinds or testdata/crds", what)
			continue
		}
		// metadata strictly as an ObjectMeta, the rest against the schema.
		var raw map[string]json.RawMessage
		var obj map[string]any
		j, err := k8syaml.YAMLToJSON(doc)
		if err == nil {
			err = json.Unmarshal(j, &raw)
		}
		if err == nil {
			err = decodeStrictJSON(raw["metadata"], &metav1.ObjectMeta{}, true)
		}
		if err == nil {
			err = decodeStrictJSON(j, &obj, false)
		}
		if err != nil {
			bad("%s: %v", what, err)
			continue
		}
		for _, err := range crds.Validate(doc) {
			bad("%s: %v", what, err)
		}
		m.custom[key] = append(m.custom[key], obj)
	}
}

// targets are the Deployments of the base, by target (container args).
var targets = map[string]string{
	"ingress": "sdevents-ingress", "quota": "sdevents-quota",
	"archiver": "sdevents-archiver", "aggregator": "sdevents-aggregator",
	"console": "sdevents-console",
}

// serviceAccounts are the ServiceAccount of each target: a cloud role
// (components/aws-irsa) reaches only the archiver and the console.
var serviceAccounts = map[string]string{
	"ingress": "sdevents", "quota": "sdevents", "aggregator": "sdevents",
	"archiver": "sdevents-archiver", "console": "sdevents-console",
}

// TestKustomize renders the base and each overlay, decodes every resource
// strictly (render) and checks what the deployment relies on.
func TestKustomize(t *testing.T) {
	t.Parallel()
	examples := exampleSecrets(t)
	for _, dir := range []string{"base", "overlays/dev", "overlays/prod", irsaDir} {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			m := render(t, dir)
			checkWorkloads(t, m)
			checkScaling(t, m, dir)
			checkNACK(t, m)
			checkPodSecurity(t, m, dir)
			checkNetworkPolicies(t, m)
			checkServiceAccounts(t, m, dir == irsaDir)
			checkMonitoring(t, m, dir == "overlays/prod" || dir == irsaDir)
			if dir == "overlays/prod" || dir == irsaDir {
				checkSpread(t, m)
			}

			// The Secrets: generated in dev (names with a hash suffix),
			// created out of band elsewhere, with the keys of
			// secret.example.yaml either way.
			secrets := examples
			if dir == "overlays/dev" {
				secrets = m.secrets
				if len(m.secrets) != len(examples) {
					t.Errorf("dev generates %d Secrets, want %d", len(m.secrets), len(examples))
				}
			} else if len(m.secrets) > 0 {
				t.Errorf("%s renders Secrets: real values do not belong in the repository", dir)
			}
			for name, sec := range m.secrets {
				ex, ok := examples[name[:max(strings.LastIndex(name, "-"), 0)]]
				if !ok {
					t.Errorf("Secret %s is not in secret.example.yaml", name)
				} else if got, want := slices.Sorted(maps.Keys(sec.Data)), slices.Sorted(maps.Keys(ex.Data)); !slices.Equal(got, want) {
					t.Errorf("Secret %s keys %v, want those of secret.example.yaml %v", name, got, want)
				}
			}
			// The overlays leave the streams to NACK.
			apply := config.StreamsOff
			if dir == "base" {
				apply = ""
			}
			checkConfigs(t, m, secrets, dir == irsaDir, apply)

			if dir != "base" {
				ns := m.namespaces[0]
				if ns == "" || slices.ContainsFunc(m.namespaces, func(n string) bool { return n != ns }) {
					t.Errorf("namespaces %v: want every object in the overlay's namespace", slices.Compact(slices.Sorted(slices.Values(m.namespaces))))
				}
			}
		})
	}
}

// irsaDir is the prod overlay with components/aws-irsa.
const irsaDir = "testdata/kustomize/prod-aws-irsa"

// exampleSecrets decodes base/secret.example.yaml strictly, by name, with
// stringData copied into data.
func exampleSecrets(t *testing.T) map[string]*corev1.Secret {
	t.Helper()
	out := map[string]*corev1.Secret{}
	docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(readFile(t, "deploy/base/secret.example.yaml"))))
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		var s corev1.Secret
		if err := decodeStrict(doc, &s); err != nil {
			t.Fatal(err)
		}
		s.Data = map[string][]byte{}
		for k, v := range s.StringData {
			s.Data[k] = []byte(v)
		}
		out[s.Name] = &s
	}
}

// checkWorkloads checks the Deployments, their PodDisruptionBudgets and the
// ingress Service.
func checkWorkloads(t *testing.T, m manifests) {
	t.Helper()
	if got := slices.Sorted(maps.Keys(m.deployments)); !slices.Equal(got, slices.Sorted(maps.Values(targets))) {
		t.Fatalf("deployments %v, want %v", got, slices.Sorted(maps.Values(targets)))
	}
	var image string
	for target, name := range targets {
		d := m.deployments[name]
		pod := d.Spec.Template
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
			t.Errorf("%s: selector %v does not select its pods (%v)", name, d.Spec.Selector, err)
		}
		ps := pod.Spec.SecurityContext
		if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.RunAsUser == nil || *ps.RunAsUser == 0 ||
			ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: pod securityContext %+v: want non-root and the RuntimeDefault seccomp profile", name, ps)
		}
		if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
			t.Errorf("%s: a service account token is mounted", name)
		}
		if len(pod.Spec.Containers) != 1 {
			t.Fatalf("%s: %d containers, want 1", name, len(pod.Spec.Containers))
		}
		c := pod.Spec.Containers[0]
		if image == "" {
			image = c.Image
		}
		if c.Image != image || !slices.Equal(c.Args, []string{target}) {
			t.Errorf("%s: image %s args %v, want %s [%s]", name, c.Image, c.Args, image, target)
		}
		cs := c.SecurityContext
		if cs == nil || cs.ReadOnlyRootFilesystem == nil || !*cs.ReadOnlyRootFilesystem ||
			cs.AllowPrivilegeEscalation == nil || *cs.AllowPrivilegeEscalation ||
			cs.Capabilities == nil || !slices.Equal(cs.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("%s: container securityContext %+v: want a read-only root, no privilege escalation, drop ALL", name, cs)
		}
		r := c.Resources
		if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() || r.Limits.Memory().IsZero() {
			t.Errorf("%s: resources %v: want cpu and memory requests and a memory limit", name, r)
		}
		if r.Limits.Memory().Cmp(*r.Requests.Memory()) < 0 {
			t.Errorf("%s: memory limit below the request", name)
		}
		probe := func(what string, p *corev1.Probe, wantPath string) {
			if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != wantPath || p.HTTPGet.Port.String() != "http" {
				t.Errorf("%s: %s probe %+v: want GET %s on port http", name, what, p, wantPath)
			}
		}
		probe("liveness", c.LivenessProbe, "/healthz")
		probe("readiness", c.ReadinessProbe, "/readyz")
		if len(c.Ports) != 1 || c.Ports[0].Name != "http" {
			t.Errorf("%s: ports %v: want one named http", name, c.Ports)
		}
		if !slices.ContainsFunc(c.VolumeMounts, func(v corev1.VolumeMount) bool { return v.MountPath == "/tmp" }) {
			t.Errorf("%s: no writable /tmp beside the read-only root", name)
		}
		if fixed := target == "quota" || target == "console"; fixed != (d.Spec.Replicas != nil) {
			t.Errorf("%s: replicas %v: want a count for quota and console, none where an autoscaler owns it", name, d.Spec.Replicas)
		}

		var pdbs []string
		for _, p := range m.pdbs {
			s, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
			if err == nil && s.Matches(labels.Set(pod.Labels)) {
				pdbs = append(pdbs, p.Name)
			}
		}
		if len(pdbs) != 1 {
			t.Errorf("%s: PodDisruptionBudgets %v select its pods, want exactly one", name, pdbs)
		}
	}

	// The ingress and the console have a Service each, selecting only their
	// pods; the monitoring component adds a headless one for every pod.
	for name, svc := range m.services {
		want := map[string]string{"sdevents-ingress": "sdevents-ingress", "sdevents-console": "sdevents-console", "sdevents-metrics": "*"}[name]
		if want == "" {
			t.Errorf("Service %s: want only sdevents-ingress, sdevents-console and sdevents-metrics", name)
			continue
		}
		for dname, d := range m.deployments {
			selected := labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels))
			if selected != (want == "*" || dname == want) {
				t.Errorf("Service %s selects %s: %v", name, dname, selected)
			}
		}
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != "http" {
			t.Errorf("Service %s ports %v: want one to the port named http", name, svc.Spec.Ports)
		}
	}
	for _, name := range []string{"sdevents-ingress", "sdevents-console"} {
		if _, ok := m.services[name]; !ok {
			t.Errorf("no Service %s", name)
		}
	}
}

// checkScaling checks the autoscalers: ingress on CPU (HPA), archiver and
// aggregator on their consumer's lag (KEDA nats-jetstream), pointed at the
// NATS headless service's monitoring port.
func checkScaling(t *testing.T, m manifests, dir string) {
	t.Helper()
	hpa, ok := m.hpas["sdevents-ingress"]
	if !ok || len(m.hpas) != 1 || hpa.Spec.ScaleTargetRef.Name != "sdevents-ingress" || hpa.Spec.ScaleTargetRef.Kind != "Deployment" {
		t.Errorf("HPAs %v: want one, on the sdevents-ingress Deployment", slices.Collect(maps.Keys(m.hpas)))
	} else if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas > hpa.Spec.MaxReplicas ||
		len(hpa.Spec.Metrics) != 1 || hpa.Spec.Metrics[0].Resource == nil || hpa.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU {
		t.Errorf("ingress HPA %+v: want CPU, min ≤ max", hpa.Spec)
	}

	consumers := streamConsumers(t)
	monitor := natsValues(t).port("monitor")
	wantEndpoint := fmt.Sprintf("%s-headless.%s.svc.cluster.local:%d", natsRelease, natsNamespace, monitor)
	scaled := map[string]bool{}
	for _, so := range m.custom["keda.sh/v1alpha1 ScaledObject"] {
		var s struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
			Spec     struct {
				ScaleTargetRef struct{ Name string } `json:"scaleTargetRef"`
				Min            *int                  `json:"minReplicaCount"`
				Max            *int                  `json:"maxReplicaCount"`
				Triggers       []struct {
					Type     string            `json:"type"`
					Metadata map[string]string `json:"metadata"`
				} `json:"triggers"`
			} `json:"spec"`
		}
		j, _ := json.Marshal(so)
		if err := json.Unmarshal(j, &s); err != nil {
			t.Fatal(err)
		}
		target := s.Spec.ScaleTargetRef.Name
		scaled[target] = true
		// KEDA's CEL rule: minReplicaCount <= maxReplicaCount.
		if s.Spec.Min == nil || s.Spec.Max == nil || *s.Spec.Min < 1 || *s.Spec.Min > *s.Spec.Max {
			t.Errorf("%s: min %v max %v: want 1 ≤ min ≤ max (never zero: timers and redeliveries)", s.Metadata.Name, s.Spec.Min, s.Spec.Max)
		}
		if dir == "overlays/prod" && *s.Spec.Min < 2 {
			t.Errorf("%s: prod runs at least two replicas", s.Metadata.Name)
		}
		if len(s.Spec.Triggers) != 1 || s.Spec.Triggers[0].Type != "nats-jetstream" {
			t.Errorf("%s: triggers %+v: want one nats-jetstream", s.Metadata.Name, s.Spec.Triggers)
			continue
		}
		md := s.Spec.Triggers[0].Metadata
		for k := range md {
			if !slices.Contains(kedaNATSJetStreamMetadata, k) {
				t.Errorf("%s: trigger metadata %q is not a key of KEDA's nats-jetstream scaler", s.Metadata.Name, k)
			}
		}
		wantConsumer := map[string]string{"sdevents-archiver": "archiver", "sdevents-aggregator": "aggregator"}[target]
		if md["stream"] != contract.StreamIngress || md["consumer"] != wantConsumer || !slices.Contains(consumers[contract.StreamIngress], wantConsumer) {
			t.Errorf("%s scales %s on %s/%s: want %s/%s, a consumer of streams/", s.Metadata.Name, target, md["stream"], md["consumer"], contract.StreamIngress, wantConsumer)
		}
		if md["account"] != "$G" || md["natsServerMonitoringEndpoint"] != wantEndpoint {
			t.Errorf("%s: account %q endpoint %q: want $G and %s (headless: only the consumer leader reports lag)", s.Metadata.Name, md["account"], md["natsServerMonitoringEndpoint"], wantEndpoint)
		}
		var lag int
		if _, err := fmt.Sscan(md["lagThreshold"], &lag); err != nil || lag < 1 {
			t.Errorf("%s: lagThreshold %q: want a positive integer", s.Metadata.Name, md["lagThreshold"])
		}
	}
	if !maps.Equal(scaled, map[string]bool{"sdevents-archiver": true, "sdevents-aggregator": true}) {
		t.Errorf("ScaledObjects target %v, want the archiver and the aggregator", scaled)
	}
}

// streamConsumers returns the consumer names of streams/, by stream.
func streamConsumers(t *testing.T) map[string][]string {
	t.Helper()
	files, err := streams.Load(streams.Files())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, f := range files {
		for _, c := range f.Consumers {
			out[f.Stream.Name] = append(out[f.Stream.Name], c.Name)
		}
	}
	return out
}

// checkNACK checks that the rendered NACK resources are the generated ones.
func checkNACK(t *testing.T, m manifests) {
	t.Helper()
	files, err := streams.Load(streams.Files())
	if err != nil {
		t.Fatal(err)
	}
	var want, got []string
	for _, f := range files {
		res, err := nack.Resources(f, nack.Replicas)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			want = append(want, r.Kind+"/"+r.Metadata.Name)
		}
	}
	for key, objs := range m.custom {
		if strings.HasPrefix(key, nack.APIVersion+" ") {
			for _, o := range objs {
				got = append(got, o["kind"].(string)+"/"+o["metadata"].(map[string]any)["name"].(string))
			}
		}
	}
	if slices.Sort(want); !slices.Equal(slices.Sorted(slices.Values(got)), want) {
		t.Errorf("NACK resources %v, want %v", got, want)
	}
}

// checkConfigs loads each Deployment's configuration as its container sees
// it — the ConfigMap and Secret keys at their mount paths, its environment
// with secretKeyRefs resolved from secrets (by name) — with pkg/config, and
// checks its streams.apply.
func checkConfigs(t *testing.T, m manifests, secrets map[string]*corev1.Secret, irsa bool, apply string) {
	t.Helper()
	for target, name := range targets {
		spec := m.deployments[name].Spec.Template.Spec
		c := spec.Containers[0]
		files := map[string][]byte{}
		for _, vm := range c.VolumeMounts {
			i := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name })
			if i < 0 {
				t.Fatalf("%s: volume %s is not defined", name, vm.Name)
			}
			switch v := spec.Volumes[i]; {
			case v.ConfigMap != nil:
				cm, ok := m.configMaps[v.ConfigMap.Name]
				if !ok {
					t.Fatalf("%s: ConfigMap %s is not in the output", name, v.ConfigMap.Name)
				}
				for k, val := range cm.Data {
					files[path.Join(vm.MountPath, k)] = []byte(val)
				}
			case v.Secret != nil:
				secret, ok := secrets[v.Secret.SecretName]
				if !ok {
					t.Errorf("%s: mounts Secret %s, which does not exist", name, v.Secret.SecretName)
					continue
				}
				items := v.Secret.Items
				if len(items) == 0 { // every key, by its name
					for _, k := range slices.Sorted(maps.Keys(secret.Data)) {
						items = append(items, corev1.KeyToPath{Key: k, Path: k})
					}
				}
				for _, it := range items {
					val, ok := secret.Data[it.Key]
					if !ok {
						t.Errorf("%s: key %s of Secret %s does not exist", name, it.Key, secret.Name)
					}
					files[path.Join(vm.MountPath, it.Path)] = val
				}
			}
		}
		env := map[string]string{}
		for _, e := range c.Env {
			switch {
			case e.ValueFrom == nil:
				env[e.Name] = e.Value
			case e.ValueFrom.SecretKeyRef != nil:
				ref := e.ValueFrom.SecretKeyRef
				secret, ok := secrets[ref.Name]
				var val []byte
				if ok {
					val, ok = secret.Data[ref.Key]
				}
				if !ok {
					t.Errorf("%s: env %s: key %s of Secret %s does not exist", name, e.Name, ref.Key, ref.Name)
				}
				env[e.Name] = string(val)
			default:
				t.Errorf("%s: env %s comes from neither a value nor the Secret", name, e.Name)
			}
		}
		cfg, err := loadConfigAs(t, files, env, env[config.EnvConfig])
		if err != nil {
			t.Errorf("%s: the configuration does not load: %v", name, err)
			continue
		}
		if cfg.NATS.URL != fmt.Sprintf("nats://%s.%s.svc.cluster.local:%d", natsRelease, natsNamespace, natsValues(t).port("nats")) ||
			cfg.NATS.Replicas != nack.Replicas {
			t.Errorf("%s: nats.url %s replicas %d: want the Helm release's client service and %d replicas", name, cfg.NATS.URL, cfg.NATS.Replicas, nack.Replicas)
		}
		if cfg.Streams.Apply != apply {
			t.Errorf("%s: streams.apply %q, want %q", name, cfg.Streams.Apply, apply)
		}
		if _, port, _ := strings.Cut(cfg.HTTP.Addr, ":"); port != fmt.Sprint(c.Ports[0].ContainerPort) {
			t.Errorf("%s: http.addr %s is not the container port %d", name, cfg.HTTP.Addr, c.Ports[0].ContainerPort)
		}
		switch target {
		case "quota":
			if cfg.Admin.Token.Reveal() == "" {
				t.Errorf("%s: no admin token", name)
			}
		}
		// Its own NATS user, with the password of its key alone.
		var natsUsers *corev1.Secret
		for _, v := range spec.Volumes {
			if v.Secret == nil || !strings.HasPrefix(v.Secret.SecretName, "sdevents-nats-users") {
				continue
			}
			natsUsers = secrets[v.Secret.SecretName]
			if len(v.Secret.Items) != 1 || v.Secret.Items[0].Key != target {
				t.Errorf("%s: mounts %v of sdevents-nats-users, want its own key %s only", name, v.Secret.Items, target)
			}
		}
		if cfg.NATS.User != target || natsUsers == nil || cfg.NATS.Password.Reveal() == "" ||
			cfg.NATS.Password.Reveal() != string(natsUsers.Data[target]) {
			t.Errorf("%s: nats.user %q with a password %v: want %s with its key of sdevents-nats-users", name, cfg.NATS.User,
				cfg.NATS.Password.Reveal() != "", target)
		}
		if target == "console" && cfg.Admin.Token.Reveal() == "" {
			t.Errorf("%s: no admin token: the console refuses to start", name)
		}
		if target == "archiver" || target == "console" { // the console reads thumbnails from the bucket
			keys := cfg.Archive.S3.AccessKey != "" && cfg.Archive.S3.SecretKey.Reveal() != ""
			if cfg.Archive.S3.Endpoint == "" || keys == irsa {
				t.Errorf("%s: archive.s3 endpoint %q, static keys %t: want an endpoint, and static keys unless the IAM role provides them", name, cfg.Archive.S3.Endpoint, keys)
			}
		}
	}
}

// TestStrictDecoding shows that decodeAll refuses what the API server (with
// strict field validation), KEDA's or NACK's CRD as published, or
// prometheus-operator's types would refuse.
func TestStrictDecoding(t *testing.T) {
	t.Parallel()
	crds := crdValidator(t)
	cases := []struct{ name, doc, want string }{
		{"deployment field typo", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replica: 2}\n", `unknown field "replica"`},
		{"container field typo", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {template: {spec: {containers: [{name: c, imag: x}]}}}\n", "imag"},
		{"metadata typo", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, label: {}}\n", "label"},
		{"unknown kind", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n", "no strict check"},
		{"NACK root field", "apiVersion: jetstream.nats.io/v1beta2\nkind: Stream\nmetadata: {name: s}\nspec: {name: S}\nspce: {}\n", `additional properties 'spce' not allowed`},
		{"NACK pattern", "apiVersion: jetstream.nats.io/v1beta2\nkind: Stream\nmetadata: {name: s}\nspec: {name: S.>}\n", "spec.name: 'S.>' does not match pattern"},
		{"NACK v1beta1 not served", "apiVersion: jetstream.nats.io/v1beta1\nkind: Stream\nmetadata: {name: s}\nspec: {name: S}\n", "no strict check"},
		{"NetworkPolicy typo", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np}\nspec: {podSelector: {}, policyType: [Ingress]}\n", `unknown field "policyType"`},
		{"ServiceMonitor typo", "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: m}\nspec: {selector: {}, endpoints: [{port: http, pth: /metrics}]}\n", `unknown field "pth"`},
		{"PrometheusRule typo", "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata: {name: r}\nspec: {groups: [{name: g, rules: [{alert: A, expr: up, fro: 5m}]}]}\n", `unknown field "fro"`},
		{"NACK unknown field", "apiVersion: jetstream.nats.io/v1beta2\nkind: Stream\nmetadata: {name: s}\nspec: {name: S, storagee: file}\n", `additional properties 'storagee' not allowed`},
		{"NACK enum", "apiVersion: jetstream.nats.io/v1beta2\nkind: Consumer\nmetadata: {name: c}\nspec: {durableName: c, ackPolicy: explicitly}\n", "spec.ackPolicy: value must be one of"},
		{"NACK type", "apiVersion: jetstream.nats.io/v1beta2\nkind: KeyValue\nmetadata: {name: k}\nspec: {bucket: K, replicas: 7}\n", "spec.replicas: maximum: got 7, want 5"},
		{"NACK metadata typo", "apiVersion: jetstream.nats.io/v1beta2\nkind: Stream\nmetadata: {name: s, annotation: {}}\nspec: {name: S}\n", "annotation"},
		{"KEDA unknown field", "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: so}\nspec: {scaleTargetRef: {name: d}, triggers: [{type: cpu, metadata: {}}], minReplicas: 1}\n", `additional properties 'minReplicas' not allowed`},
		{"KEDA required", "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: so}\nspec: {scaleTargetRef: {name: d}}\n", `missing property 'triggers'`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, errs := decodeAll([]byte(c.doc), crds)
			if !strings.Contains(fmt.Sprint(errs), c.want) {
				t.Errorf("errors %v, want one containing %q", errs, c.want)
			}
		})
	}
}

// TestKubernetesConfigMatchesExample checks that the ConfigMap's
// configuration is sdevents.example.yaml apart from the keys a cluster must
// change: a setting added to the example and forgotten here fails.
func TestKubernetesConfigMatchesExample(t *testing.T) {
	t.Parallel()
	example, err := config.Load(filepath.Join(repoRoot(t), "sdevents.example.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	k8s, err := loadConfigAs(t, map[string][]byte{
		"/etc/sdevents/config/config.yaml":      readFile(t, "deploy/base/config/sdevents.yaml"),
		"/etc/sdevents/callback-keys/default-1": []byte("SK-example"),
	}, nil, "/etc/sdevents/config/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	allowed := []string{
		"http.addr", "nats.url", "nats.replicas",
		"callbacks.0.keys.0.sk_file", // the SK comes from the Secret
		"admin.token",                // quota reads it from the Secret
		"archive.s3.endpoint",        // MinIO/S3 instead of a directory
	}
	a, b := flatten(t, example), flatten(t, k8s)
	for _, k := range slices.Sorted(maps.Keys(mergeKeys(a, b))) {
		if a[k] != b[k] && !slices.Contains(allowed, k) {
			t.Errorf("%s: example %q, deploy/base/config/sdevents.yaml %q", k, a[k], b[k])
		}
	}
}

// flatten returns every leaf of cfg's YAML form by dotted path.
func flatten(t *testing.T, cfg config.Config) map[string]string {
	t.Helper()
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var tree any
	if err := yaml.Unmarshal(raw, &tree); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				walk(strings.TrimPrefix(prefix+"."+k, "."), e)
			}
		case []any:
			if len(v) == 0 {
				out[prefix] = "[]"
			}
			for i, e := range v {
				walk(fmt.Sprintf("%s.%d", prefix, i), e)
			}
		default:
			out[prefix] = fmt.Sprint(v)
		}
	}
	walk("", tree)
	return out
}

func mergeKeys(a, b map[string]string) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// TestVendoredCRDsUnchanged checks that each file of testdata/crds is, below
// its comment, the upstream file it names (its SHA-256 when it was copied):
// the CRDs are validated as the projects publish them, never edited.
func TestVendoredCRDsUnchanged(t *testing.T) {
	t.Parallel()
	want := map[string]string{
		"keda-v2.21.0-scaledobjects.yaml": "af35555862a83933b074af14ad439c4b4ceabaf4daa3e9338e9b23e36d308d80",
		"nack-crds.yml":                   "7d2aec40bf365bc0b39f6762b0e0e90ff830f32e1f5fb371f52a7a7f8d288d2a",
	}
	paths, _ := filepath.Glob("testdata/crds/*")
	if len(paths) != len(want) {
		t.Errorf("testdata/crds holds %v, want %v", paths, slices.Sorted(maps.Keys(want)))
	}
	for name, sum := range want {
		b, err := os.ReadFile(filepath.Join("testdata", "crds", name))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitAfter(string(b), "\n")
		i := 0
		for i < len(lines) && strings.HasPrefix(lines[i], "#") {
			i++
		}
		if got := fmt.Sprintf("%x", sha256.Sum256([]byte(strings.Join(lines[i:], "")))); got != sum {
			t.Errorf("%s: the upstream part has SHA-256 %s, want %s", name, got, sum)
		}
	}
}
