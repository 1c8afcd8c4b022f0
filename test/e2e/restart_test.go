package e2e

// A clean restart (SIGTERM, then start on the same data dir) keeps every object
// exactly as it was (uid, resourceVersion, ClusterIP), keeps counting
// resourceVersions upwards, keeps the ClusterIP allocations, and reuses the
// cluster's identity files unchanged and private.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// rstObject is what the test remembers about one object across the restart.
type rstObject struct {
	kind, ns, name string
	uid, rv        string
	clusterIP      string
}

func (o rstObject) String() string { return fmt.Sprintf("%s %s/%s", o.kind, o.ns, o.name) }

// rstGet reads the object o names, as it is now.
func rstGet(ctx context.Context, cs kubernetes.Interface, o rstObject) (rstObject, error) {
	var meta metav1.Object
	got := o
	switch o.kind {
	case "Namespace":
		x, err := cs.CoreV1().Namespaces().Get(ctx, o.name, metav1.GetOptions{})
		if err != nil {
			return got, err
		}
		meta = x
	case "ConfigMap":
		x, err := cs.CoreV1().ConfigMaps(o.ns).Get(ctx, o.name, metav1.GetOptions{})
		if err != nil {
			return got, err
		}
		meta = x
	case "Deployment":
		x, err := cs.AppsV1().Deployments(o.ns).Get(ctx, o.name, metav1.GetOptions{})
		if err != nil {
			return got, err
		}
		meta = x
	case "Service":
		x, err := cs.CoreV1().Services(o.ns).Get(ctx, o.name, metav1.GetOptions{})
		if err != nil {
			return got, err
		}
		meta, got.clusterIP = x, x.Spec.ClusterIP
	default:
		return got, fmt.Errorf("unknown kind %s", o.kind)
	}
	got.uid, got.rv = string(meta.GetUID()), meta.GetResourceVersion()
	return got, nil
}

// rstFile is an identity file whose bytes and mode must survive restarts.
type rstFile struct {
	data []byte
	mode os.FileMode
}

func rstReadFiles(t *testing.T, dir string, names []string) map[string]rstFile {
	t.Helper()
	out := map[string]rstFile{}
	for _, n := range names {
		p := filepath.Join(dir, n)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("identity file: %v", err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("identity file: %v", err)
		}
		out[n] = rstFile{data: data, mode: st.Mode().Perm()}
	}
	return out
}

func TestRestartKeepsState(t *testing.T) {
	s := StartServer(t)
	cs := s.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	const ns = "restart"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	for _, name := range []string{"settings", "flags"} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"owner": name, "text": "line1\nline2"}}
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create configmap: %v", err)
		}
	}
	replicas := int32(2)
	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create service: %v", err)
	}

	objects := []rstObject{
		{kind: "Namespace", name: ns},
		{kind: "ConfigMap", ns: ns, name: "settings"},
		{kind: "ConfigMap", ns: ns, name: "flags"},
		{kind: "Deployment", ns: ns, name: "web"},
		{kind: "Service", ns: ns, name: "web"},
		{kind: "Namespace", name: "default"},
		{kind: "Service", ns: "default", name: "kubernetes"},
	}
	for i, o := range objects {
		var got rstObject
		// The kubernetes Service is created by the API server shortly after it
		// reports ready, as upstream's is.
		Eventually(t, 20*time.Second, func() (err error) {
			got, err = rstGet(ctx, cs, o)
			return err
		})
		if got.uid == "" || got.rv == "" {
			t.Fatalf("%s has uid %q resourceVersion %q", o, got.uid, got.rv)
		}
		objects[i] = got
	}
	if ip := objects[4].clusterIP; ip == "" || ip == "None" {
		t.Fatalf("service web got no ClusterIP: %q", ip)
	}
	if ip := objects[6].clusterIP; ip != "10.43.0.1" {
		t.Errorf("kubernetes service ClusterIP = %q, want 10.43.0.1", ip)
	}
	// The highest resourceVersion handed out so far, as a list reports it.
	before, err := cs.CoreV1().ConfigMaps(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	maxRV := infRV(t, before.ResourceVersion)
	for _, o := range objects {
		if rv := infRV(t, o.rv); rv > maxRV {
			maxRV = rv
		}
	}

	identity := []string{"tls/ca.crt", "tls/ca.key", "tls/serving.crt", "tls/serving.key", "tls/admin.crt", "tls/admin.key",
		"tls/service-account.key", "tls/service-account.pub", "admin.kubeconfig", "token"}
	files := rstReadFiles(t, s.DataDir, identity)
	for _, n := range []string{"token", "admin.kubeconfig", "tls/ca.key", "tls/admin.key", "tls/serving.key", "tls/service-account.key"} {
		if m := files[n].mode; m != 0o600 {
			t.Errorf("%s has mode %#o, want 0600", n, m)
		}
	}
	if len(strings.TrimSpace(string(files["token"].data))) == 0 {
		t.Errorf("token file is empty")
	}

	// Clean stop: SIGTERM, exit status 0, promptly.
	start := time.Now()
	s.Stop()
	took := time.Since(start)
	exited, code := s.Exited()
	if !exited || code != 0 {
		t.Fatalf("after SIGTERM: exited=%v code=%d, want a clean exit 0; log tail:\n%s", exited, code, tail(s.Logs(), 30))
	}
	t.Logf("SIGTERM to exit: %s", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("SIGTERM took %s to exit, want under 10s", took.Round(time.Millisecond))
	}
	if !strings.Contains(s.Logs(), "peapod server stopped") {
		t.Errorf("log does not say the server stopped cleanly:\n%s", tail(s.Logs(), 20))
	}

	s.Start()
	cs = s.Client()
	for _, want := range objects {
		got, err := rstGet(ctx, cs, want)
		if err != nil {
			t.Errorf("after restart, get %s: %v", want, err)
			continue
		}
		if got.uid != want.uid || got.rv != want.rv || got.clusterIP != want.clusterIP {
			t.Errorf("after restart %s = uid %s rv %s clusterIP %q; before: uid %s rv %s clusterIP %q",
				want, got.uid, got.rv, got.clusterIP, want.uid, want.rv, want.clusterIP)
		}
	}
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if cm.Data["owner"] != "settings" || cm.Data["text"] != "line1\nline2" {
		t.Errorf("configmap data after restart: %v", cm.Data)
	}
	// The real kubectl agrees.
	if out := s.MustKubectl("get", "service", "web", "-n", ns, "-o", "jsonpath={.metadata.uid} {.spec.clusterIP}"); out != objects[4].uid+" "+objects[4].clusterIP {
		t.Errorf("kubectl sees service web as %q, want %q", out, objects[4].uid+" "+objects[4].clusterIP)
	}
	if out := s.MustKubectl("get", "deployment", "web", "-n", ns, "-o", "jsonpath={.metadata.resourceVersion}"); out != objects[3].rv {
		t.Errorf("kubectl sees deployment web at resourceVersion %q, want %q", out, objects[3].rv)
	}

	// New writes continue upwards.
	cm.Data["owner"] = "updated after restart"
	updated, err := cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("update after restart: %v", err)
	}
	created, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after-restart"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create after restart: %v", err)
	}
	for what, rv := range map[string]string{"update": updated.ResourceVersion, "create": created.ResourceVersion} {
		if infRV(t, rv) <= maxRV {
			t.Errorf("%s after restart got resourceVersion %s, not above the %d reached before the restart", what, rv, maxRV)
		}
	}
	if infRV(t, created.ResourceVersion) <= infRV(t, updated.ResourceVersion) {
		t.Errorf("create after update got resourceVersion %s <= %s", created.ResourceVersion, updated.ResourceVersion)
	}

	// The ClusterIP allocations survived: asking for web's address again is refused.
	clash := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "clash"},
		Spec: corev1.ServiceSpec{
			ClusterIP: objects[4].clusterIP,
			Ports:     []corev1.ServicePort{{Port: 80}},
		},
	}
	_, err = cs.CoreV1().Services(ns).Create(ctx, clash, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "already allocated") {
		t.Errorf("creating a service with web's ClusterIP %s after restart: got %v, want Invalid \"already allocated\"", objects[4].clusterIP, err)
	}
	fresh, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "fresh"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service after restart: %v", err)
	}
	if ip := fresh.Spec.ClusterIP; ip == objects[4].clusterIP || ip == "10.43.0.1" || ip == "" {
		t.Errorf("new service after restart got ClusterIP %q (web has %s)", ip, objects[4].clusterIP)
	}

	// Identity reused byte for byte, still private.
	after := rstReadFiles(t, s.DataDir, identity)
	for _, n := range identity {
		if string(after[n].data) != string(files[n].data) {
			t.Errorf("%s changed across the restart", n)
		}
		if after[n].mode != files[n].mode {
			t.Errorf("%s mode changed across the restart: %#o -> %#o", n, files[n].mode, after[n].mode)
		}
	}
	if m := after["token"].mode; m != 0o600 {
		t.Errorf("token has mode %#o after restart, want 0600", m)
	}
	if m := after["admin.kubeconfig"].mode; m != 0o600 {
		t.Errorf("admin.kubeconfig has mode %#o after restart, want 0600", m)
	}
}
