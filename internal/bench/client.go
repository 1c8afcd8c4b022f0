package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
)

const (
	contentProtobuf = "application/vnd.kubernetes.protobuf"
	contentJSON     = "application/json"

	// labelApp marks every object the benchmark creates.
	labelApp = "app.kubernetes.io/name"
	appName  = "peapod-bench"
	// labelBatch groups pods so they can be deleted with bounded
	// deletecollection calls.
	labelBatch = "peapod.dev/bench-batch"
	batchSize  = 500
)

// newClientset returns a clientset speaking contentType (protobuf or JSON)
// with client-side throttling off, on a connection of its own: a Dial func of
// its own keeps client-go from sharing a cached transport (and so an HTTP/2
// connection) between clientsets.
func newClientset(base *rest.Config, contentType string) (*kubernetes.Clientset, error) {
	cfg := rest.CopyConfig(base)
	cfg.QPS = -1 // no client-side rate limiter
	cfg.Burst = 0
	cfg.RateLimiter = nil
	cfg.UserAgent = "peapod-bench"
	cfg.ContentType = contentType
	if contentType == contentProtobuf {
		cfg.AcceptContentTypes = contentProtobuf + "," + contentJSON
	} else {
		cfg.AcceptContentTypes = contentJSON
	}
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	cfg.Dial = d.DialContext
	return kubernetes.NewForConfig(cfg)
}

// newClientsets returns n clientsets, each on its own connection, and opens
// that connection with a cheap request so that no measurement pays a TLS
// handshake.
func newClientsets(ctx context.Context, base *rest.Config, n int, contentType string) ([]*kubernetes.Clientset, error) {
	cs := make([]*kubernetes.Clientset, n)
	for i := range cs {
		c, err := newClientset(base, contentType)
		if err != nil {
			return nil, err
		}
		if err := warmUp(ctx, c); err != nil {
			return nil, err
		}
		cs[i] = c
	}
	return cs, nil
}

func warmUp(ctx context.Context, c kubernetes.Interface) error {
	_, err := c.CoreV1().Namespaces().Get(ctx, metav1.NamespaceDefault, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("connecting to the API server: %w", err)
	}
	return nil
}

// waitReady polls the server's /readyz until it answers ok or timeout passes.
func waitReady(ctx context.Context, c kubernetes.Interface, timeout time.Duration) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		last = readyz(ctx, c)
		return last == nil, nil
	})
	if err != nil && last != nil {
		return fmt.Errorf("API server not ready after %s: %w", timeout, last)
	}
	return err
}

// readyz asks the server's /readyz once.
func readyz(ctx context.Context, c kubernetes.Interface) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	b, err := c.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return err
	}
	if s := strings.TrimSpace(string(b)); s != "ok" {
		return fmt.Errorf("/readyz: %s", s)
	}
	return nil
}

// benchPod is a minimal valid pod: one busybox container and no node, so the
// server just stores it.
func benchPod(name string, index int) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				labelApp:   appName,
				labelBatch: fmt.Sprint(index / batchSize),
			},
		},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:    "busybox",
				Image:   "busybox:1.36",
				Command: []string{"sleep", "3600"},
			}},
		},
	}
}

func podName(prefix string, i int) string { return fmt.Sprintf("%s-%06d", prefix, i) }

// createNamespace creates namespace ns and makes sure its "default"
// ServiceAccount exists, which the ServiceAccount admission plugin needs
// before it admits pods: it waits up to saWait for a serviceaccount
// controller to make it, then creates it itself (an API server without a
// controller manager never does).
func createNamespace(ctx context.Context, c kubernetes.Interface, ns string, saWait time.Duration) error {
	_, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{labelApp: appName}},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", ns, err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, saWait, true, func(ctx context.Context) (bool, error) {
		_, err := c.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	_, err = c.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "default"},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create ServiceAccount %s/default: %w", ns, err)
	}
	return nil
}

// deletePods deletes the benchmark's pods in ns, n of them at most, with one
// deletecollection call per batch label, workers calls at a time. Bounded
// batches keep every call well inside the server's request timeout.
func deletePods(ctx context.Context, c kubernetes.Interface, ns string, n, workers int) error {
	batches := (n + batchSize - 1) / batchSize
	work := make(chan int, batches)
	for b := range batches {
		work <- b
	}
	close(work)
	errs := make(chan error, workers)
	for range workers {
		go func() {
			for b := range work {
				err := c.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{
					LabelSelector: fmt.Sprintf("%s=%s,%s=%d", labelApp, appName, labelBatch, b),
				})
				if err != nil {
					errs <- fmt.Errorf("deletecollection pods in %s, batch %d: %w", ns, b, err)
					return
				}
			}
			errs <- nil
		}()
	}
	var err error
	for range workers {
		err = errors.Join(err, <-errs)
	}
	return err
}

// watchStream is a pod watch read at the wire level: it decodes each
// protobuf frame only as far as the event type and the object's name (via
// PartialObjectMetadata, which skips spec and status), so that the benchmark
// client's own CPU use, on a machine it shares with the server, stays small
// next to the server's.
type watchStream struct {
	body io.ReadCloser
	r    *bufio.Reader
	buf  []byte
}

// protobufMagic prefixes every object encoded by the Kubernetes protobuf
// serializer (but not the raw stream frames around watch events).
var protobufMagic = []byte{0x6b, 0x38, 0x73, 0x00}

func openPodWatch(ctx context.Context, c kubernetes.Interface, ns, resourceVersion string) (*watchStream, error) {
	body, err := c.CoreV1().RESTClient().Get().
		Namespace(ns).Resource("pods").
		VersionedParams(&metav1.ListOptions{Watch: true, ResourceVersion: resourceVersion}, scheme.ParameterCodec).
		SetHeader("Accept", contentProtobuf).
		Stream(ctx)
	if err != nil {
		return nil, err
	}
	return &watchStream{body: body, r: bufioReader(body)}, nil
}

func bufioReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, 64<<10) }

// next returns the next event's type and object name.
func (w *watchStream) next() (watch.EventType, string, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(w.r, hdr[:]); err != nil {
		return "", "", err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > 64<<20 {
		return "", "", fmt.Errorf("watch frame of %d bytes: not a protobuf watch stream", n)
	}
	if cap(w.buf) < int(n) {
		w.buf = make([]byte, n)
	}
	frame := w.buf[:n]
	if _, err := io.ReadFull(w.r, frame); err != nil {
		return "", "", err
	}
	var ev metav1.WatchEvent
	if err := ev.Unmarshal(frame); err != nil {
		return "", "", fmt.Errorf("decoding watch event: %w", err)
	}
	typ := watch.EventType(ev.Type)
	raw := ev.Object.Raw
	if !bytes.HasPrefix(raw, protobufMagic) {
		return typ, "", fmt.Errorf("watch event %s: object is not protobuf-encoded", typ)
	}
	var unk runtime.Unknown
	if err := unk.Unmarshal(raw[len(protobufMagic):]); err != nil {
		return typ, "", fmt.Errorf("decoding watch event object: %w", err)
	}
	if typ == watch.Error {
		return typ, "", fmt.Errorf("watch error event: %s", unk.Raw)
	}
	var meta metav1.PartialObjectMetadata
	if err := meta.Unmarshal(unk.Raw); err != nil {
		return typ, "", fmt.Errorf("decoding %s metadata: %w", unk.Kind, err)
	}
	return typ, meta.Name, nil
}

func (w *watchStream) Close() error { return w.body.Close() }

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }
