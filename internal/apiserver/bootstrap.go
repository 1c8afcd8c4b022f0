package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/kubernetes"
)

// systemNamespaces are the namespaces every cluster has from its first moment.
var systemNamespaces = []string{metav1.NamespaceDefault, metav1.NamespaceSystem, metav1.NamespacePublic, corev1.NamespaceNodeLease}

// createSystemNamespaces is a post-start hook: /readyz stays unready until the
// system namespaces exist. Upstream creates them from a controller that races
// with the one that publishes the kubernetes Service (which then waits out a
// 10 s retry when "default" was not there yet); holding readiness back until
// they exist makes "ready" mean the kubernetes Service appears at once.
func createSystemNamespaces(hc genericapiserver.PostStartHookContext) error {
	return createUntilServed(hc, "system namespaces", func(ctx context.Context, cs kubernetes.Interface) error {
		for _, name := range systemNamespaces {
			_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
		}
		return nil
	})
}

// createUntilServed runs create (which must treat AlreadyExists as success)
// through the loopback client every 20 ms until it succeeds: the API is still
// starting while post-start hooks run. It gives up after 30 s, as upstream's
// bootstrap hooks do, which fails the server's start.
func createUntilServed(hc genericapiserver.PostStartHookContext, what string, create func(context.Context, kubernetes.Interface) error) error {
	cs, err := kubernetes.NewForConfig(hc.LoopbackClientConfig)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	var last error
	err = wait.PollUntilContextTimeout(hc, 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		last = create(ctx, cs)
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w (last error: %v)", what, err, last)
	}
	return nil
}

// crdListPath is where kubectl's client-side validation looks for custom
// resource definitions when a manifest names a kind the server does not know.
const crdListPath = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"

// emptyCRDList is the answer of a server that defines no custom resources.
const emptyCRDList = `{"kind":"CustomResourceDefinitionList","apiVersion":"apiextensions.k8s.io/v1","metadata":{"resourceVersion":"0"},"items":[]}`

// noCustomResources answers kubectl's CRD lookup with an empty list (peapod
// serves no custom resources), so that an unknown kind gets upstream's "no
// matches for kind" error instead of a validation failure; every other path
// goes to next. Requests reach it only after authentication.
func noCustomResources(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == crdListPath && r.Method == http.MethodGet {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(emptyCRDList))
			return
		}
		next.ServeHTTP(w, r)
	})
}
