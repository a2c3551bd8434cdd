// Package deploy holds no code: its tests keep the example configuration, the
// compose file and the Kubernetes manifests from rotting silently. Every YAML
// file must parse; the gateway configuration each deployment assembles must
// pass config.Load with the environment that deployment gives the gateway;
// names the manifests refer to each other by must exist.
package deploy

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tongban/tongban/connectors/builtin"
	"github.com/tongban/tongban/gateway/config"
)

// docs decodes every YAML document of a file.
func docs(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var out []map[string]any
	for i := 0; i < 100; i++ {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, i+1, err)
		}
		if d != nil {
			out = append(out, d)
		}
	}
	t.Fatalf("%s: more than 100 documents", path)
	return nil
}

// at walks nested maps and lists: keys are map keys or list indexes.
func at(v any, path ...string) any {
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func str(v any, path ...string) string { s, _ := at(v, path...).(string); return s }

func list(v any, path ...string) []any { l, _ := at(v, path...).([]any); return l }

func TestEveryYAMLFileParses(t *testing.T) {
	var files []string
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"compose.yaml", "tongban.yaml", "compose/tongban.yaml", "kubernetes/statefulset.yaml"} {
		if !slices.Contains(files, want) {
			t.Errorf("%s missing (found %v)", want, files)
		}
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			ds := docs(t, f)
			if len(ds) == 0 {
				t.Fatal("no YAML document")
			}
			if !strings.HasPrefix(f, "kubernetes"+string(filepath.Separator)) {
				return
			}
			for i, d := range ds {
				if str(d, "apiVersion") == "" || str(d, "kind") == "" {
					t.Errorf("document %d: no apiVersion or kind", i+1)
				}
				if str(d, "kind") != "Kustomization" && str(d, "metadata", "name") == "" {
					t.Errorf("document %d (%s): no metadata.name", i+1, str(d, "kind"))
				}
			}
		})
	}
}

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := config.Load("tongban.yaml", nil)
	if err != nil {
		t.Fatalf("deploy/tongban.yaml: %v", err)
	}
	if len(cfg.Departments.Connectors) == 0 || len(cfg.Identities) == 0 {
		t.Errorf("example has no connectors or identities: %+v", cfg)
	}
}

// k8s is the set of Kubernetes objects of deploy/kubernetes, by kind and
// name.
type k8s map[string]map[string]any

func loadK8s(t *testing.T) k8s {
	t.Helper()
	objs := k8s{}
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		for _, d := range docs(t, f) {
			objs[str(d, "kind")+"/"+str(d, "metadata", "name")] = d
		}
	}
	return objs
}

func (o k8s) get(t *testing.T, kind, name string) map[string]any {
	t.Helper()
	d, ok := o[kind+"/"+name]
	if !ok {
		t.Fatalf("no %s %q in deploy/kubernetes", kind, name)
	}
	return d
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// TestKubernetesManifests assembles the configuration as the init container
// does (ConfigMap + the Secret's identities.yaml), builds the gateway
// container's environment from the StatefulSet (Secret references resolved
// from secret.example.yaml, the pod name for the downward API), and checks
// that config.Load accepts it; then checks the cross references.
func TestKubernetesManifests(t *testing.T) {
	objs := loadK8s(t)
	sts := objs.get(t, "StatefulSet", "tongban")
	secret := objs.get(t, "Secret", "tongban-secrets")
	cm := objs.get(t, "ConfigMap", "tongban-config")
	pod := at(sts, "spec", "template", "spec")

	var gw any
	for _, c := range list(pod, "containers") {
		if str(c, "name") == "gateway" {
			gw = c
		}
	}
	if gw == nil {
		t.Fatal("no gateway container")
	}

	// The configuration the node reads.
	stringData := func(key string) string {
		v, ok := at(secret, "stringData", key).(string)
		if !ok {
			t.Fatalf("secret.example.yaml has no stringData %q", key)
		}
		return v
	}
	path := filepath.Join(t.TempDir(), "tongban.yaml")
	if err := os.WriteFile(path, []byte(str(cm, "data", "tongban.yaml")+stringData("identities.yaml")), 0o600); err != nil {
		t.Fatal(err)
	}
	const podName = "tongban-0"
	env := map[string]string{}
	var environ []string
	for _, e := range list(gw, "env") {
		name := str(e, "name")
		var v string
		switch {
		case at(e, "value") != nil:
			v = envRef.ReplaceAllStringFunc(str(e, "value"), func(m string) string { return env[m[2:len(m)-1]] })
		case at(e, "valueFrom", "secretKeyRef") != nil:
			if got := str(e, "valueFrom", "secretKeyRef", "name"); got != "tongban-secrets" {
				t.Errorf("env %s: secret %q, want tongban-secrets", name, got)
			}
			v = stringData(str(e, "valueFrom", "secretKeyRef", "key"))
		case str(e, "valueFrom", "fieldRef", "fieldPath") == "metadata.name":
			v = podName
		case at(e, "valueFrom", "resourceFieldRef") != nil:
			v = "1073741824"
		default:
			t.Errorf("env %s: unsupported source %v", name, e)
		}
		env[name] = v
		environ = append(environ, name+"="+v)
	}
	cfg, err := config.Load(path, environ)
	if err != nil {
		t.Fatalf("the Kubernetes configuration does not load: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"node is the pod name", cfg.Node, podName},
		{"store driver", cfg.Store.Driver, "postgres"},
		{"store DSN from the Secret", cfg.Store.DSN, stringData("store-dsn")},
		{"cache keys from the Secret", cfg.Cache.Redis.Keys, stringData("cache-keys")},
		{"Kafka configured", len(cfg.Events.Kafka.Brokers) > 0, true},
		{"Redis configured", len(cfg.Cache.Redis.Addrs) > 0, true},
		{"read-only root filesystem", at(gw, "securityContext", "readOnlyRootFilesystem"), true},
		{"no privilege escalation", at(gw, "securityContext", "allowPrivilegeEscalation"), false},
		{"non-root pod", at(pod, "securityContext", "runAsNonRoot"), true},
		{"readiness probe", str(gw, "readinessProbe", "httpGet", "path"), "/readyz"},
		{"liveness probe", str(gw, "livenessProbe", "httpGet", "path"), "/healthz"},
		{"two replicas", at(sts, "spec", "replicas"), 2},
		{"requests", at(gw, "resources", "requests") != nil && at(gw, "resources", "limits") != nil, true},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}

	// Probes and services point at the REST port the configuration listens on.
	ports := map[string]int{}
	for _, p := range list(gw, "ports") {
		ports[str(p, "name")], _ = at(p, "containerPort").(int)
	}
	for key, addr := range map[string]string{"rest": cfg.Server.RESTAddr, "grpc": cfg.Server.GRPCAddr} {
		host, port, _ := strings.Cut(addr, ":")
		if host != "0.0.0.0" || port != strconv.Itoa(ports[key]) {
			t.Errorf("server.%s_addr %s does not match container port %s=%d", key, addr, key, ports[key])
		}
	}
	for _, probe := range []string{"readinessProbe", "livenessProbe", "startupProbe"} {
		if p := str(gw, probe, "httpGet", "port"); ports[p] == 0 {
			t.Errorf("%s port %q is not a container port", probe, p)
		}
	}

	// Every file path of the configuration is on a writable volume or a
	// read-only mount that provides it.
	mounts := map[string]bool{} // mount path -> read only
	for _, m := range list(gw, "volumeMounts") {
		ro, _ := at(m, "readOnly").(bool)
		mounts[str(m, "mountPath")] = ro
	}
	under := func(p string) (string, bool) {
		for m, ro := range mounts {
			if strings.HasPrefix(p, m+"/") {
				return m, ro
			}
		}
		return "", false
	}
	writable := []string{cfg.Audit.Dir + "/x", cfg.Audit.SigningKeyFile, cfg.Audit.ExportCursorFile, "/tmp/plugin"}
	if cfg.Store.Driver != "postgres" {
		// With PostgreSQL the corrections queue is a table beside the grants.
		writable = append(writable, cfg.Forms.CorrectionsPath)
	}
	for _, p := range writable {
		if m, ro := under(p); m == "" || ro {
			t.Errorf("%s is not on a writable volume (mounts %v)", p, mounts)
		}
	}
	if m, _ := under(cfg.Audit.SubjectKeyFile); m == "" {
		t.Errorf("subject key %s is not mounted", cfg.Audit.SubjectKeyFile)
	}
	if m, _ := under("/run/tongban/tongban.yaml"); m == "" || !slices.Contains(stringsOf(list(gw, "args")), "/run/tongban/tongban.yaml") {
		t.Errorf("gateway args %v do not read the assembled configuration", list(gw, "args"))
	}
	var claims []string
	for _, c := range list(sts, "spec", "volumeClaimTemplates") {
		claims = append(claims, str(c, "metadata", "name"))
	}
	volumes := map[string]any{}
	for _, v := range list(pod, "volumes") {
		volumes[str(v, "name")] = v
	}
	for _, c := range append(list(pod, "containers"), list(pod, "initContainers")...) {
		for _, m := range list(c, "volumeMounts") {
			if n := str(m, "name"); volumes[n] == nil && !slices.Contains(claims, n) {
				t.Errorf("container %s mounts unknown volume %q", str(c, "name"), n)
			}
		}
	}
	for n, v := range volumes {
		if cmName := str(v, "configMap", "name"); cmName != "" {
			objs.get(t, "ConfigMap", cmName)
		}
		if s := str(v, "secret", "secretName"); s != "" {
			objs.get(t, "Secret", s)
			for _, it := range list(v, "secret", "items") {
				stringData(str(it, "key"))
			}
		}
		_ = n
	}

	// References between objects.
	labels := at(sts, "spec", "template", "metadata", "labels")
	for _, name := range []string{"tongban", "tongban-nodes"} {
		svc := objs.get(t, "Service", name)
		for k, v := range at(svc, "spec", "selector").(map[string]any) {
			if at(labels, k) != v {
				t.Errorf("Service %s selects %s=%v, pods have %v", name, k, v, labels)
			}
		}
		for _, p := range list(svc, "spec", "ports") {
			if tp := str(p, "targetPort"); ports[tp] == 0 {
				t.Errorf("Service %s targetPort %q is not a container port", name, tp)
			}
		}
	}
	if got := str(sts, "spec", "serviceName"); objs["Service/"+got] == nil || at(objs["Service/"+got], "spec", "clusterIP") != "None" {
		t.Errorf("serviceName %q is not a headless Service", got)
	}
	hpa := objs.get(t, "HorizontalPodAutoscaler", "tongban")
	if str(hpa, "spec", "scaleTargetRef", "kind") != "StatefulSet" || str(hpa, "spec", "scaleTargetRef", "name") != "tongban" {
		t.Errorf("HPA targets %v", at(hpa, "spec", "scaleTargetRef"))
	}
	if minR, _ := at(hpa, "spec", "minReplicas").(int); minR < 2 {
		t.Errorf("HPA minReplicas %d < 2", minR)
	}
	pdb := objs.get(t, "PodDisruptionBudget", "tongban")
	if !reflect.DeepEqual(at(pdb, "spec", "selector", "matchLabels"), at(sts, "spec", "selector", "matchLabels")) {
		t.Errorf("PDB selects %v", at(pdb, "spec", "selector"))
	}

	// kustomization.yaml lists existing files and not the example Secret.
	kust := objs.get(t, "Kustomization", "")
	for _, r := range stringsOf(list(kust, "resources")) {
		if _, err := os.Stat(filepath.Join("kubernetes", r)); err != nil {
			t.Errorf("kustomization resource %s: %v", r, err)
		}
		if strings.Contains(r, "example") {
			t.Errorf("kustomization includes the example %s", r)
		}
	}
}

func stringsOf(l []any) []string {
	out := make([]string, 0, len(l))
	for _, v := range l {
		s, _ := v.(string)
		out = append(out, s)
	}
	return out
}

var update = flag.Bool("update", false, "rewrite deploy/compose/connectors.yaml from the demo connectors")

// composeConnectors renders the departments section of the compose
// configuration: the connectors of `tongban demo` (builtin.DemoSettings) at
// the given simulator URLs.
func composeConnectors(vars map[string]string) ([]byte, error) {
	type connector struct {
		Name     string    `yaml:"name"`
		Type     string    `yaml:"type"`
		Settings yaml.Node `yaml:"settings"`
	}
	var doc struct {
		Departments struct {
			HealthInterval string      `yaml:"health_interval"`
			Connectors     []connector `yaml:"connectors"`
		} `yaml:"departments"`
	}
	doc.Departments.HealthInterval = "30s"
	for _, dep := range builtin.DemoDepartments() {
		typ, raw, err := builtin.DemoSettings(dep, vars)
		if err != nil {
			return nil, err
		}
		var n yaml.Node
		if err := yaml.Unmarshal(raw, &n); err != nil {
			return nil, fmt.Errorf("connector %s: %w", dep, err)
		}
		doc.Departments.Connectors = append(doc.Departments.Connectors, connector{Name: dep, Type: typ, Settings: *n.Content[0]})
	}
	var b bytes.Buffer
	b.WriteString("# Generated by go test ./deploy -update from connectors/builtin/testdata/demo:\n" +
		"# the connectors of `tongban demo`, pointing at the simulators of compose.yaml\n" +
		"# (127.0.0.1 of the simulators container, whose network namespace the nodes\n" +
		"# share). init.sh appends this file to tongban.yaml. Do not edit.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

var composeVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?][^}]*)?\}`)

// TestCompose runs the compose file's init script (as the init service
// would, into temporary directories), then loads the assembled configuration
// with each node's environment from compose.yaml, and checks the wiring:
// services, ports, volumes, the simulators' ports in the connectors, and that
// the connectors are those of `tongban demo`.
func TestCompose(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Fatalf("sh: %v", err)
	}
	compose := docs(t, "compose.yaml")[0]
	services, _ := at(compose, "services").(map[string]any)
	for _, s := range []string{"node-a", "node-b", "redis", "kafka", "postgres", "simulators", "init"} {
		if services[s] == nil {
			t.Errorf("compose.yaml has no service %s", s)
		}
	}
	declared, _ := at(compose, "volumes").(map[string]any)
	for name, svc := range services {
		for _, v := range stringsOf(list(svc, "volumes")) {
			src, _, _ := strings.Cut(v, ":")
			if !strings.HasPrefix(src, ".") && declared[src] == nil {
				t.Errorf("service %s uses undeclared volume %s", name, src)
			}
		}
	}

	simCmd := stringsOf(list(services["simulators"], "command"))
	simPort := func(flag string) string {
		i := slices.Index(simCmd, flag)
		if i < 0 || i+1 >= len(simCmd) {
			t.Fatalf("simulators command %v lacks %s", simCmd, flag)
		}
		return simCmd[i+1]
	}
	// The connectors are the demo's, at the simulators' ports: a golden
	// file, refreshed with -update when connectors/builtin/testdata/demo
	// changes.
	want, err := composeConnectors(map[string]string{
		"MARKET_URL":    "http://127.0.0.1:" + simPort("--market-port"),
		"APPROVAL_URL":  "http://127.0.0.1:" + simPort("--approval-port"),
		"RESOURCES_URL": "http://127.0.0.1:" + simPort("--resources-port"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile("compose/connectors.yaml", want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := os.ReadFile("compose/connectors.yaml"); !bytes.Equal(got, want) {
		t.Errorf("deploy/compose/connectors.yaml is stale (the demo connectors changed): run go test ./deploy -update\n got:\n%s\nwant:\n%s", got, want)
	}

	// The init service, for real.
	dir := t.TempDir()
	out := filepath.Join(dir, "run")
	cmd := exec.Command("sh", "compose/init.sh")
	cmd.Env = append(os.Environ(), "CONFIG_DIR=compose", "OUT_DIR="+out,
		"DATA_DIRS="+filepath.Join(dir, "node-a")+" "+filepath.Join(dir, "node-b"), "GATEWAY_UID="+strconv.Itoa(os.Getuid()))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("compose/init.sh: %v\n%s", err, b)
	}
	tokens, err := os.ReadFile(filepath.Join(out, "tokens.env"))
	if err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(filepath.Join(out, "tongban.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// A second run keeps the tokens.
	if b, err := exec.Command("sh", "-c", "CONFIG_DIR=compose OUT_DIR="+out+" DATA_DIRS="+dir+"/x GATEWAY_UID=0 sh compose/init.sh").CombinedOutput(); err != nil {
		t.Fatalf("second run: %v\n%s", err, b)
	}
	if again, _ := os.ReadFile(filepath.Join(out, "tokens.env")); !bytes.Equal(again, tokens) {
		t.Error("a second init run changed the tokens")
	}
	if again, _ := os.ReadFile(filepath.Join(out, "tongban.yaml")); !bytes.Equal(again, first) {
		t.Error("a second init run changed the configuration")
	}
	if bytes.Contains(first, bytes.TrimSpace(bytes.SplitN(bytes.SplitN(tokens, []byte("="), 2)[1], []byte("\n"), 2)[0])) {
		t.Error("the configuration contains a token, not its digest")
	}

	published := map[string]bool{}
	for _, p := range stringsOf(list(services["simulators"], "ports")) {
		parts := strings.Split(p, ":")
		published[parts[len(parts)-1]] = true
	}

	testVars := map[string]string{"POSTGRES_PASSWORD": "pw", "TONGBAN_CACHE_KEYS": "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
	for _, node := range []string{"node-a", "node-b"} {
		t.Run(node, func(t *testing.T) {
			svc := services[node]
			if str(svc, "network_mode") != "service:simulators" {
				t.Errorf("network_mode %q: the simulators listen on their loopback only", str(svc, "network_mode"))
			}
			if at(svc, "read_only") != true {
				t.Error("read_only is not true")
			}
			var environ []string
			envMap, _ := at(svc, "environment").(map[string]any)
			for k, v := range envMap {
				s, _ := v.(string)
				s = composeVar.ReplaceAllStringFunc(s, func(m string) string {
					name := composeVar.FindStringSubmatch(m)[1]
					val, ok := testVars[name]
					if !ok {
						t.Errorf("%s uses ${%s}, which the test does not know", k, name)
					}
					return val
				})
				environ = append(environ, k+"="+s)
			}
			cfg, err := config.Load(filepath.Join(out, "tongban.yaml"), environ)
			if err != nil {
				t.Fatalf("the compose configuration does not load for %s: %v", node, err)
			}
			if cfg.Node != node {
				t.Errorf("node %q", cfg.Node)
			}
			if len(cfg.Identities) != 5 {
				t.Errorf("%d identities, want 5", len(cfg.Identities))
			}
			for _, addr := range []string{cfg.Server.RESTAddr, cfg.Server.GRPCAddr} {
				_, port, _ := strings.Cut(addr, ":")
				if !published[port] {
					t.Errorf("%s listens on %s, which the simulators service does not publish", node, addr)
				}
			}
			if len(cfg.Cache.Redis.Addrs) == 0 || len(cfg.Events.Kafka.Brokers) == 0 || cfg.Store.Driver != "postgres" {
				t.Errorf("shared services not configured: %+v %+v %+v", cfg.Cache.Redis, cfg.Events.Kafka, cfg.Store)
			}
			if got := len(cfg.Departments.Connectors); got != len(builtin.DemoDepartments()) {
				t.Errorf("%d connectors, want one per simulated department", got)
			}
		})
	}
}
