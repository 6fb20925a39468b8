package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// checkPodSecurity evaluates every pod template with Pod Security
// Admission's own checks at the "restricted" level, and checks that the
// overlays' namespaces enforce that level.
func checkPodSecurity(t *testing.T, m manifests, dir string) {
	t.Helper()
	ev, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	restricted := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	for name, d := range m.deployments {
		pod := d.Spec.Template
		res := policy.AggregateCheckResults(ev.EvaluatePod(restricted, &pod.ObjectMeta, &pod.Spec))
		if !res.Allowed {
			t.Errorf("%s: the restricted Pod Security Standard forbids its pods: %v %v", name, res.ForbiddenReasons, res.ForbiddenDetails)
		}
	}
	if dir == "base" {
		return
	}
	if len(m.nss) != 1 {
		t.Fatalf("namespaces %v: want the overlay's one", slices.Collect(maps.Keys(m.nss)))
	}
	for name, ns := range m.nss {
		for _, mode := range []string{psaapi.EnforceLevelLabel, psaapi.AuditLevelLabel, psaapi.WarnLevelLabel} {
			if ns.Labels[mode] != string(psaapi.LevelRestricted) {
				t.Errorf("namespace %s: %s = %q, want restricted", name, mode, ns.Labels[mode])
			}
		}
		if v := ns.Labels[psaapi.EnforceVersionLabel]; v != "latest" {
			t.Errorf("namespace %s: %s = %q, want latest", name, psaapi.EnforceVersionLabel, v)
		}
		if ns.Labels[natsClientLabel] != "true" {
			t.Errorf("namespace %s: no %s label: its pods cannot reach NATS", name, natsClientLabel)
		}
	}
}

// natsClientLabel marks the namespaces and pods that may reach the NATS
// client port (deploy/nats/networkpolicy.yaml).
const natsClientLabel = "sdevents.io/nats-client"

// access is one way in allowed by the NetworkPolicies: from the namespaces
// with a label, to a port.
type access struct{ from, port string }

// allowedIn returns the ways into pods with podLabels that the policies
// allow, and whether any policy selects them for Ingress at all.
func allowedIn(t *testing.T, pols map[string]*networkingv1.NetworkPolicy, podLabels map[string]string) (map[access]bool, bool) {
	t.Helper()
	out := map[access]bool{}
	isolated := false
	for name, p := range pols {
		sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
		if err != nil {
			t.Fatalf("NetworkPolicy %s: %v", name, err)
		}
		if !sel.Matches(labels.Set(podLabels)) || !slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			continue
		}
		isolated = true
		for _, rule := range p.Spec.Ingress {
			for _, peer := range rule.From {
				from := "?"
				switch {
				case peer.IPBlock != nil:
					from = "ipBlock " + peer.IPBlock.CIDR
				case peer.NamespaceSelector != nil && peer.PodSelector == nil && len(peer.NamespaceSelector.MatchExpressions) == 0:
					from = labels.Set(peer.NamespaceSelector.MatchLabels).String()
				case peer.NamespaceSelector == nil && peer.PodSelector != nil:
					from = "this namespace: " + labels.Set(peer.PodSelector.MatchLabels).String()
				case peer.NamespaceSelector != nil && peer.PodSelector != nil:
					from = labels.Set(peer.NamespaceSelector.MatchLabels).String() + " pods " + labels.Set(peer.PodSelector.MatchLabels).String()
				}
				if len(rule.Ports) == 0 {
					out[access{from, "any"}] = true
				}
				for _, port := range rule.Ports {
					out[access{from, port.Port.String()}] = true
				}
			}
			if len(rule.From) == 0 {
				for _, port := range rule.Ports {
					out[access{"anywhere", port.Port.String()}] = true
				}
			}
		}
	}
	return out, isolated
}

// checkNetworkPolicies checks who may reach each sdevents pod: nobody but the
// monitoring namespace (metrics), plus the gateway for the ingress and the
// console's gateway for the console, all on the port named http.
func checkNetworkPolicies(t *testing.T, m manifests) {
	t.Helper()
	deny, ok := m.netpols["sdevents-default-deny"]
	if !ok || len(deny.Spec.PodSelector.MatchLabels)+len(deny.Spec.PodSelector.MatchExpressions) != 0 ||
		!slices.Equal(deny.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) || len(deny.Spec.Ingress) != 0 {
		t.Errorf("sdevents-default-deny %+v: want every pod selected for Ingress, nothing allowed", deny)
	}
	monitoring := access{"kubernetes.io/metadata.name=monitoring", "http"}
	for target, name := range targets {
		pod := m.deployments[name].Spec.Template
		want := map[access]bool{monitoring: true}
		switch target {
		case "ingress":
			want[access{"sdevents.io/gateway=true", "http"}] = true
		case "console":
			want[access{"sdevents.io/console=true", "http"}] = true
		}
		got, isolated := allowedIn(t, m.netpols, pod.Labels)
		if !isolated || !maps.Equal(got, want) {
			t.Errorf("%s: allowed in %v (isolated %t), want %v", name, got, isolated, want)
		}
		if pod.Labels[natsClientLabel] != "true" {
			t.Errorf("%s: pods without the %s label cannot reach NATS", name, natsClientLabel)
		}
		if pod.Spec.Containers[0].Ports[0].Name != "http" {
			t.Errorf("%s: the policies name the port http, the container calls it %s", name, pod.Spec.Containers[0].Ports[0].Name)
		}
	}
}

// checkServiceAccounts checks that each target runs as its ServiceAccount,
// that none mounts an API token, and, with aws-irsa, that exactly the
// archiver's and the console's carry an IAM role.
func checkServiceAccounts(t *testing.T, m manifests, irsa bool) {
	t.Helper()
	for target, name := range targets {
		sa := m.deployments[name].Spec.Template.Spec.ServiceAccountName
		if sa != serviceAccounts[target] {
			t.Errorf("%s: ServiceAccount %q, want %q", name, sa, serviceAccounts[target])
		}
	}
	if got, want := slices.Sorted(maps.Keys(m.sas)), slices.Sorted(slices.Values([]string{"sdevents", "sdevents-archiver", "sdevents-console"})); !slices.Equal(got, want) {
		t.Errorf("ServiceAccounts %v, want %v", got, want)
	}
	for name, sa := range m.sas {
		if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			t.Errorf("ServiceAccount %s mounts an API token", name)
		}
		role := sa.Annotations["eks.amazonaws.com/role-arn"]
		if wantRole := irsa && name != "sdevents"; (role != "") != wantRole || (wantRole && !strings.HasPrefix(role, "arn:aws:iam::")) {
			t.Errorf("ServiceAccount %s: role %q, want one: %t", name, role, wantRole)
		}
	}
}

// checkMonitoring checks the ServiceMonitor of components/monitoring (in prod
// only): it selects the metrics Service, which selects every sdevents pod,
// and scrapes /metrics on its port.
func checkMonitoring(t *testing.T, m manifests, want bool) {
	t.Helper()
	dashboard, hasDashboard := m.configMaps[dashboardConfigMap]
	if !want {
		if len(m.monitors) > 0 || len(m.rules) > 0 || m.services["sdevents-metrics"] != nil || hasDashboard {
			t.Error("monitoring outside prod: it needs the prometheus-operator's CRDs")
		}
		return
	}
	// The alert rules and the dashboard, as in the component's files
	// (checked by TestAlertRules and TestDashboard).
	if r, ok := m.rules["sdevents"]; !ok || len(m.rules) != 1 || len(r.Spec.Groups) == 0 {
		t.Errorf("PrometheusRules %v: want sdevents, with the alert rules", slices.Collect(maps.Keys(m.rules)))
	}
	if !hasDashboard || dashboard.Labels["grafana_dashboard"] != "1" ||
		dashboard.Data[dashboardFile] != string(readFile(t, filepath.Join("deploy", monitoringDir, dashboardFile))) {
		t.Errorf("ConfigMap %s: want the label grafana_dashboard: \"1\" and %s as it is", dashboardConfigMap, dashboardFile)
	}
	sm, ok := m.monitors["sdevents"]
	svc := m.services["sdevents-metrics"]
	if !ok || svc == nil || len(m.monitors) != 1 {
		t.Fatalf("ServiceMonitors %v, metrics Service %v: want sdevents and sdevents-metrics", slices.Collect(maps.Keys(m.monitors)), svc != nil)
	}
	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(svc.Labels)) {
		t.Errorf("ServiceMonitor selector %v does not select the Service sdevents-metrics (%v)", sm.Spec.Selector, err)
	}
	for name, other := range m.services {
		if name != svc.Name && sel.Matches(labels.Set(other.Labels)) {
			t.Errorf("ServiceMonitor also selects Service %s: its pods would be scraped twice", name)
		}
	}
	if svc.Spec.ClusterIP != "None" {
		t.Errorf("sdevents-metrics: clusterIP %q, want headless", svc.Spec.ClusterIP)
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != svc.Spec.Ports[0].Name || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoints %+v: want /metrics on the Service's port %s", sm.Spec.Endpoints, svc.Spec.Ports[0].Name)
	}
	if !slices.Contains(sm.Spec.PodTargetLabels, "app.kubernetes.io/component") {
		t.Error("ServiceMonitor: the series do not say which service they come from")
	}
}

// checkSpread checks that prod spreads each service's pods over zones and
// over nodes.
func checkSpread(t *testing.T, m manifests) {
	t.Helper()
	for name, d := range m.deployments {
		var keys []string
		for _, c := range d.Spec.Template.Spec.TopologySpreadConstraints {
			sel, err := metav1.LabelSelectorAsSelector(c.LabelSelector)
			if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) || !slices.Contains(c.MatchLabelKeys, "app.kubernetes.io/component") {
				t.Errorf("%s: spread constraint %+v does not count this service's pods", name, c)
			}
			keys = append(keys, c.TopologyKey)
		}
		if !slices.Contains(keys, "topology.kubernetes.io/zone") || !slices.Contains(keys, "kubernetes.io/hostname") {
			t.Errorf("%s: spread over %v, want zones and nodes", name, keys)
		}
	}
}

// TestNATSNetworkPolicies checks deploy/nats/networkpolicy.yaml against the
// Helm values and the sdevents pods: the client port only from this
// namespace and from labelled pods in labelled namespaces, the route port
// only from the servers, the monitoring port from KEDA and monitoring, and
// nothing else.
func TestNATSNetworkPolicies(t *testing.T) {
	t.Parallel()
	pols := map[string]*networkingv1.NetworkPolicy{}
	docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(readFile(t, "deploy/nats/networkpolicy.yaml"))))
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var p networkingv1.NetworkPolicy
		if err := decodeStrict(doc, &p); err != nil {
			t.Fatal(err)
		}
		if p.Namespace != "" {
			t.Errorf("%s names namespace %s: it is applied with -n %s", p.Name, p.Namespace, natsNamespace)
		}
		pols[p.Name] = &p
	}
	v := natsValues(t)
	server := map[string]string{"app.kubernetes.io/name": "nats", "app.kubernetes.io/instance": natsRelease, "app.kubernetes.io/component": "nats"}
	got, isolated := allowedIn(t, pols, server)
	client, monitor := fmt.Sprint(v.port("nats")), fmt.Sprint(v.port("monitor"))
	want := map[access]bool{
		{"this namespace: ", client}:                                                            true,
		{natsClientLabel + "=true pods " + natsClientLabel + "=true", client}:                   true,
		{"this namespace: app.kubernetes.io/instance=nats,app.kubernetes.io/name=nats", "6222"}: true,
		{"kubernetes.io/metadata.name=keda", monitor}:                                           true,
		{"kubernetes.io/metadata.name=monitoring", monitor}:                                     true,
	}
	if !isolated || !maps.Equal(got, want) {
		t.Errorf("into the NATS servers: %v (isolated %t), want %v", got, isolated, want)
	}
	if _, isolated := allowedIn(t, pols, map[string]string{"app.kubernetes.io/component": "nats-box"}); !isolated {
		t.Error("the other pods of the namespace are not under the default deny")
	}
}
