package listcache_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/apitesting/fuzzer"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/kubernetes/pkg/api/legacyscheme"
	apitesting "k8s.io/kubernetes/pkg/api/testing"
	api "k8s.io/kubernetes/pkg/apis/core"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/peapod-dev/peapod/internal/apiserver/listcache"
)

func newCache(t *testing.T, clk *testingclock.FakeClock, maxBytes int) *listcache.Cache {
	t.Helper()
	c, err := listcache.New(listcache.Config{
		Convertor: runtime.UnsafeObjectConvertor(legacyscheme.Scheme),
		Lists:     []runtime.Object{&api.PodList{}},
		Clock:     clk,
		Idle:      time.Minute,
		MaxBytes:  maxBytes,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fuzzedPods returns n random internal pods (upstream's API fuzzer, so every
// field the types have is exercised), each with a name, UID and
// resourceVersion as a stored object has.
func fuzzedPods(seed int64, n int) []api.Pod {
	f := fuzzer.FuzzerFor(apitesting.FuzzerFuncs, rand.NewSource(seed), legacyscheme.Codecs)
	pods := make([]api.Pod, n)
	for i := range pods {
		f.Fuzz(&pods[i])
		pods[i].Namespace = "ns"
		pods[i].Name = fmt.Sprintf("pod-%d", i)
		pods[i].UID = types.UID(fmt.Sprintf("uid-%d-%d", seed, i))
		pods[i].ResourceVersion = fmt.Sprint(100 + i)
	}
	return pods
}

type encoders struct{ upstream, cached runtime.Encoder }

func encodersFor(c *listcache.Cache, s runtime.Encoder) encoders {
	return encoders{
		upstream: legacyscheme.Codecs.EncoderForVersion(s, corev1.SchemeGroupVersion),
		cached:   c.NegotiatedSerializer(legacyscheme.Codecs).EncoderForVersion(s, corev1.SchemeGroupVersion),
	}
}

func protobufEncoders(c *listcache.Cache) encoders {
	return encodersFor(c, protobuf.NewSerializer(legacyscheme.Scheme, legacyscheme.Scheme))
}

func jsonSerializer(o json.SerializerOptions) runtime.Encoder {
	return json.NewSerializerWithOptions(json.DefaultMetaFactory, legacyscheme.Scheme, legacyscheme.Scheme, o)
}

// cachedEncodings are the encodings whose lists the cache serves.
var cachedEncodings = []struct {
	name       string
	serializer runtime.Encoder
}{
	{"protobuf", protobuf.NewSerializer(legacyscheme.Scheme, legacyscheme.Scheme)},
	{"JSON", jsonSerializer(json.SerializerOptions{})},
}

// sameBytes encodes obj with both encoders (the cached one through its
// allocator path, as the API handlers call it) and wants identical output.
func (e encoders) sameBytes(t *testing.T, what string, obj runtime.Object) {
	t.Helper()
	var want bytes.Buffer
	if err := e.upstream.Encode(obj, &want); err != nil {
		t.Fatalf("%s: upstream encode: %v", what, err)
	}
	var got bytes.Buffer
	if err := e.cached.(runtime.EncoderWithAllocator).EncodeWithAllocator(obj, &got, &runtime.Allocator{}); err != nil {
		t.Fatalf("%s: cached encode: %v", what, err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("%s: %d bytes differ from upstream's %d", what, got.Len(), want.Len())
	}
}

func TestListBytesAreUpstreams(t *testing.T) {
	for _, e := range cachedEncodings {
		t.Run(e.name, func(t *testing.T) { testListBytesAreUpstreams(t, e.serializer) })
	}
}

func testListBytesAreUpstreams(t *testing.T, serializer runtime.Encoder) {
	clk := testingclock.NewFakeClock(time.Now())
	c := newCache(t, clk, 64<<20)
	enc := encodersFor(c, serializer)
	for seed := int64(1); seed <= 20; seed++ {
		list := &api.PodList{
			ListMeta: metav1.ListMeta{ResourceVersion: "12345", Continue: "token", RemainingItemCount: ptrTo(int64(seed))},
			Items:    fuzzedPods(seed, 25),
		}
		enc.sameBytes(t, fmt.Sprintf("seed %d, cold", seed), list)
		if n, _ := c.Len(); n != 25 {
			t.Fatalf("seed %d: cache holds %d entries after a 25-pod list, want 25", seed, n)
		}
		enc.sameBytes(t, fmt.Sprintf("seed %d, warm", seed), list)

		// Changed objects carry a new resourceVersion: their old bytes must
		// not be served. A recreated object has a new UID.
		changed := fuzzedPods(seed+1000, 25)
		for i := range list.Items {
			switch i % 3 {
			case 0:
				changed[i].UID = list.Items[i].UID
				changed[i].ResourceVersion = fmt.Sprint(5000 + i)
				list.Items[i] = changed[i]
			case 1:
				changed[i].ResourceVersion = list.Items[i].ResourceVersion
				changed[i].UID = "recreated"
				list.Items[i] = changed[i]
			}
		}
		enc.sameBytes(t, fmt.Sprintf("seed %d, changed", seed), list)
	}
}

func TestEmptyAndUncacheableItems(t *testing.T) {
	for _, e := range cachedEncodings {
		t.Run(e.name, func(t *testing.T) { testEmptyAndUncacheableItems(t, e.serializer) })
	}
}

func testEmptyAndUncacheableItems(t *testing.T, serializer runtime.Encoder) {
	c := newCache(t, testingclock.NewFakeClock(time.Now()), 64<<20)
	enc := encodersFor(c, serializer)
	enc.sameBytes(t, "empty list", &api.PodList{ListMeta: metav1.ListMeta{ResourceVersion: "7"}})
	enc.sameBytes(t, "nil items", &api.PodList{})
	pods := fuzzedPods(7, 3)
	pods[1].ResourceVersion = ""
	pods[2].UID = ""
	enc.sameBytes(t, "items without resourceVersion or UID", &api.PodList{Items: pods})
	if n, _ := c.Len(); n != 1 {
		t.Fatalf("cache holds %d entries, want only the one with a UID and resourceVersion", n)
	}
}

func TestOtherObjectsPassThrough(t *testing.T) {
	c := newCache(t, testingclock.NewFakeClock(time.Now()), 64<<20)
	enc := protobufEncoders(c)
	pods := fuzzedPods(3, 2)
	enc.sameBytes(t, "single pod", &pods[0])
	enc.sameBytes(t, "a list type the cache was not given", &api.ConfigMapList{Items: []api.ConfigMap{{ObjectMeta: metav1.ObjectMeta{Name: "a", UID: "u", ResourceVersion: "1"}}}})
	if n, _ := c.Len(); n != 0 {
		t.Fatalf("cache holds %d entries, want none", n)
	}

	// YAML and pretty-printed JSON are upstream's alone.
	for _, o := range []json.SerializerOptions{{Yaml: true}, {Pretty: true}} {
		enc := encodersFor(c, jsonSerializer(o))
		if enc.cached.Identifier() != enc.upstream.Identifier() {
			t.Fatalf("%+v: encoder identifier %q, want upstream's %q", o, enc.cached.Identifier(), enc.upstream.Identifier())
		}
		enc.sameBytes(t, fmt.Sprintf("%+v list", o), &api.PodList{Items: pods})
	}
	if n, _ := c.Len(); n != 0 {
		t.Fatalf("YAML and pretty JSON lists filled the cache with %d entries", n)
	}
}

// Both encodings of one pod are cached apart: a JSON LIST never gets an
// item's protobuf bytes or the other way round.
func TestEncodingsAreCachedApart(t *testing.T) {
	c := newCache(t, testingclock.NewFakeClock(time.Now()), 64<<20)
	list := &api.PodList{Items: fuzzedPods(9, 5)}
	for round := 0; round < 2; round++ {
		for _, e := range cachedEncodings {
			encodersFor(c, e.serializer).sameBytes(t, fmt.Sprintf("%s, round %d", e.name, round), list)
		}
	}
	if n, _ := c.Len(); n != 10 {
		t.Fatalf("cache holds %d entries for 5 pods in 2 encodings, want 10", n)
	}
}

func TestIdleEntriesAreEvicted(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now())
	c := newCache(t, clk, 64<<20)
	enc := protobufEncoders(c)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	all := fuzzedPods(11, 10)
	enc.sameBytes(t, "ten pods", &api.PodList{Items: all})
	// Half a minute on, a LIST uses the first five again.
	waitTicker(t, clk)
	clk.Step(30 * time.Second)
	enc.sameBytes(t, "five pods", &api.PodList{Items: all[:5]})
	// A minute after the first LIST the other five are idle for the
	// cache's Idle and go; the five used since stay.
	waitTicker(t, clk)
	clk.Step(31 * time.Second)
	waitFor(t, func() bool { n, _ := c.Len(); return n == 5 })
	waitTicker(t, clk)
	clk.Step(31 * time.Second)
	waitFor(t, func() bool { n, b := c.Len(); return n == 0 && b == 0 })
}

func TestByteBudget(t *testing.T) {
	c := newCache(t, testingclock.NewFakeClock(time.Now()), 1)
	enc := protobufEncoders(c)
	enc.sameBytes(t, "list over the budget", &api.PodList{Items: fuzzedPods(5, 4)})
	if n, b := c.Len(); n != 0 || b != 0 {
		t.Fatalf("a 1-byte budget holds %d entries, %d bytes", n, b)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now())
	if _, err := listcache.New(listcache.Config{Convertor: legacyscheme.Scheme, Lists: []runtime.Object{&api.Pod{}}, Clock: clk, Idle: time.Minute, MaxBytes: 1}); err == nil {
		t.Fatal("a non-list type was accepted")
	}
	if _, err := listcache.New(listcache.Config{Lists: []runtime.Object{&api.PodList{}}}); err == nil {
		t.Fatal("a config without convertor, clock, idle period and budget was accepted")
	}
}

func waitTicker(t *testing.T, clk *testingclock.FakeClock) {
	t.Helper()
	waitFor(t, clk.HasWaiters)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

func ptrTo[T any](v T) *T { return &v }

// A full cache still drops an object's stale version when a LIST meets the
// new one, so that old versions never hold the budget.
func TestFullCacheDropsStaleVersions(t *testing.T) {
	pods := fuzzedPods(13, 5)
	sizer := newCache(t, testingclock.NewFakeClock(time.Now()), 64<<20)
	protobufEncoders(sizer).sameBytes(t, "sizing", &api.PodList{Items: pods})
	_, budget := sizer.Len()

	c := newCache(t, testingclock.NewFakeClock(time.Now()), budget)
	enc := protobufEncoders(c)
	enc.sameBytes(t, "first versions", &api.PodList{Items: pods})
	if n, b := c.Len(); n != 5 || b != budget {
		t.Fatalf("cache holds %d entries, %d bytes; want 5 filling the %d-byte budget", n, b, budget)
	}
	// Each new version is one byte longer (a longer resourceVersion): the
	// first no longer fits once its old version is gone, the rest do.
	for i := range pods {
		pods[i].ResourceVersion = fmt.Sprint(1000 + i)
	}
	enc.sameBytes(t, "new versions", &api.PodList{Items: pods})
	if n, b := c.Len(); n != 4 || b > budget {
		t.Fatalf("cache holds %d entries, %d bytes (budget %d); want the 4 new versions that fit and no old one", n, b, budget)
	}
}
