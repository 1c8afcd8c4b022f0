package e2e

import (
	"sync"
	"testing"

	"k8s.io/client-go/discovery"
)

// The OpenAPI documents are built on their first request (apiserver's
// installLazyOpenAPI). Clients fetch several at once, as kubectl does for
// the group versions it needs: the server must build them all and live.
// Building two at once crashed it (concurrent map writes in the definitions
// the builders share). That crash depends on timing: this test did not
// reproduce it in 5 runs against the unfixed server, one CI run did. The fix
// (one build at a time) is checked by reading installLazyOpenAPI; this test
// keeps the concurrent first fetch exercised.
func TestOpenAPIConcurrentFirstFetch(t *testing.T) {
	s := StartServer(t)
	dc := discovery.NewDiscoveryClientForConfigOrDie(s.RESTConfig())
	paths, err := dc.OpenAPIV3().Paths()
	if err != nil {
		t.Fatalf("openapi v3 index: %v", err)
	}
	if len(paths) < 10 {
		t.Fatalf("openapi v3 index lists %d group versions, want every served one", len(paths))
	}
	var wg sync.WaitGroup
	for name, gv := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := gv.Schema("application/json"); err != nil {
				t.Errorf("openapi v3 %s: %v", name, err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := dc.OpenAPISchema(); err != nil {
			t.Errorf("openapi v2: %v", err)
		}
	}()
	wg.Wait()
	if exited, code := s.Exited(); exited {
		t.Fatalf("the server exited (code %d) while building its OpenAPI documents:\n%s", code, tail(s.Logs(), 40))
	}
}
