package apiserver

// Fuzz targets for the request-decoding path of the API server peapod embeds.
//
// FuzzDecodeObject feeds arbitrary bytes through the decoders kube-apiserver uses on
// request bodies (the universal deserializer for JSON, YAML and protobuf, and the
// strict JSON/YAML serializers wrapped in the defaulting, converting codec that
// create handlers use), then through the registry strategies' create path
// (PrepareForCreate, validation, canonicalization) for pods, configmaps,
// deployments and services. It asserts nothing panics and that whatever decodes
// re-encodes and decodes to an equal object.
//
// FuzzPatch applies arbitrary strategic merge patches to a Pod and asserts the
// patch machinery never panics and only ever produces JSON.
//
// `make fuzz` runs FuzzDecodeObject for a few seconds; plain `go test` runs the
// seed corpora below, which is fast.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/conversion"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	jsonserializer "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/storage/names"

	"k8s.io/kubernetes/pkg/api/legacyscheme"
	podutil "k8s.io/kubernetes/pkg/api/pod"
	"k8s.io/kubernetes/pkg/apis/apps"
	_ "k8s.io/kubernetes/pkg/apis/apps/install"
	"k8s.io/kubernetes/pkg/apis/core"
	_ "k8s.io/kubernetes/pkg/apis/core/install"
	corevalidation "k8s.io/kubernetes/pkg/apis/core/validation"
	deploymentregistry "k8s.io/kubernetes/pkg/registry/apps/deployment"
	configmapregistry "k8s.io/kubernetes/pkg/registry/core/configmap"
	podregistry "k8s.io/kubernetes/pkg/registry/core/pod"
	serviceregistry "k8s.io/kubernetes/pkg/registry/core/service"
)

var (
	fuzzScheme = legacyscheme.Scheme

	// The serializers the API server negotiates for request bodies.
	fuzzJSON       = jsonserializer.NewSerializerWithOptions(jsonserializer.DefaultMetaFactory, fuzzScheme, fuzzScheme, jsonserializer.SerializerOptions{})
	fuzzStrictJSON = jsonserializer.NewSerializerWithOptions(jsonserializer.DefaultMetaFactory, fuzzScheme, fuzzScheme, jsonserializer.SerializerOptions{Strict: true})
	fuzzStrictYAML = jsonserializer.NewSerializerWithOptions(jsonserializer.DefaultMetaFactory, fuzzScheme, fuzzScheme, jsonserializer.SerializerOptions{Yaml: true, Strict: true})
	fuzzProto      = protobuf.NewSerializer(fuzzScheme, fuzzScheme)

	// protobufPrefix starts every Kubernetes protobuf envelope.
	protobufPrefix = []byte{0x6b, 0x38, 0x73, 0x00}

	// roundTripEqual is apiequality.Semantic at the precision the wire formats keep:
	// metav1.Time is serialized with whole seconds and metav1.MicroTime with
	// microseconds (both drop anything finer by design), and RawExtension keeps the
	// JSON it was given, which re-encoding compacts and re-escapes.
	roundTripEqual = conversion.EqualitiesOrDie(
		func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 },
		func(a, b metav1.MicroTime) bool { return a.UnixMicro() == b.UnixMicro() },
		func(a, b metav1.Time) bool { return a.Unix() == b.Unix() },
		func(a, b labels.Selector) bool { return a.String() == b.String() },
		func(a, b fields.Selector) bool { return a.String() == b.String() },
		func(a, b runtime.RawExtension) bool { return sameJSON(a.Raw, b.Raw) },
	)
)

// sameJSON compares two JSON documents by meaning: re-encoding compacts
// whitespace and escapes characters such as '&' differently.
func sameJSON(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	va, errA := decodeJSONValue(a)
	vb, errB := decodeJSONValue(b)
	return errA == nil && errB == nil && reflect.DeepEqual(va, vb)
}

func decodeJSONValue(data []byte) (interface{}, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v interface{}
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// dumpPair shows two objects that should be equal (Go syntax keeps what JSON hides,
// such as nil versus empty and sub-second times).
func dumpPair(a, b interface{}) string {
	return fmt.Sprintf("before: %#v\nafter:  %#v", a, b)
}

// createTarget is a resource whose create path the fuzzer drives, as the API
// server's create handler would for a POST to that resource's collection.
type createTarget struct {
	gvk      schema.GroupVersionKind
	newObj   func() runtime.Object // the internal type the handler decodes into
	strategy rest.RESTCreateStrategy
}

var createTargets = []createTarget{
	{corev1.SchemeGroupVersion.WithKind("Pod"), func() runtime.Object { return &core.Pod{} }, podregistry.Strategy},
	{corev1.SchemeGroupVersion.WithKind("ConfigMap"), func() runtime.Object { return &core.ConfigMap{} }, configmapregistry.Strategy},
	{corev1.SchemeGroupVersion.WithKind("Service"), func() runtime.Object { return &core.Service{} }, serviceregistry.Strategy},
	{schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, func() runtime.Object { return &apps.Deployment{} }, deploymentregistry.Strategy},
}

func FuzzDecodeObject(f *testing.F) {
	for _, s := range decodeSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkUniversalDecode(t, data)
		for _, target := range createTargets {
			checkCreateDecode(t, data, fuzzStrictJSON, target)
			checkCreateDecode(t, data, fuzzStrictYAML, target)
		}
	})
}

// checkUniversalDecode decodes data with the universal deserializer (no defaulting,
// no conversion) and checks the object survives a round trip through the wire
// format it came in: protobuf for protobuf input, JSON otherwise (YAML input is
// JSON underneath).
func checkUniversalDecode(t *testing.T, data []byte) {
	obj, gvk, err := legacyscheme.Codecs.UniversalDeserializer().Decode(data, nil, nil)
	if err != nil {
		return
	}
	if gvk == nil {
		t.Fatalf("decode succeeded without a kind: %T", obj)
	}
	if cp := obj.DeepCopyObject(); !roundTripEqual.DeepEqual(obj, cp) {
		t.Fatalf("DeepCopy of %s differs from the original: %s", gvk, dumpPair(obj, cp))
	}
	// The decoder reports the kind it found; the object's own TypeMeta may be
	// incomplete (the kind sniffer reads "apiVersion" case-insensitively, the
	// object decoder does not). Encoders set it from the scheme, as here.
	obj.GetObjectKind().SetGroupVersionKind(*gvk)
	var codec runtime.Serializer = fuzzJSON
	if bytes.HasPrefix(data, protobufPrefix) {
		codec = fuzzProto
	}
	checkRoundTrip(t, codec, obj, *gvk)
}

// checkRoundTrip encodes obj (of kind gvk) with codec, decodes it again, and wants
// an equal object; a second encoding must be byte-identical to the first.
func checkRoundTrip(t *testing.T, codec runtime.Serializer, obj runtime.Object, gvk schema.GroupVersionKind) {
	t.Helper()
	var enc bytes.Buffer
	if err := codec.Encode(obj, &enc); err != nil {
		t.Fatalf("%s decoded but does not encode (%T): %v", gvk, obj, err)
	}
	again, gvk2, err := codec.Decode(enc.Bytes(), nil, nil)
	if err != nil {
		t.Fatalf("%s: re-encoded object does not decode: %v\nencoded: %q", gvk, err, enc.Bytes())
	}
	if *gvk2 != gvk {
		t.Fatalf("kind changed on round trip: %s -> %s", gvk, gvk2)
	}
	if !roundTripEqual.DeepEqual(obj, again) {
		t.Fatalf("%s changed on round trip:\n%s\nencoded: %q", gvk, dumpPair(obj, again), enc.Bytes())
	}
	var enc2 bytes.Buffer
	if err := codec.Encode(again, &enc2); err != nil {
		t.Fatalf("%s: second encode: %v", gvk, err)
	}
	if !bytes.Equal(enc.Bytes(), enc2.Bytes()) {
		t.Fatalf("%s: encoding is not stable:\nfirst:  %q\nsecond: %q", gvk, enc.Bytes(), enc2.Bytes())
	}
}

// checkCreateDecode decodes data as a create request body for target: the strict
// serializer inside the scheme's defaulting, converting codec (what the create
// handler uses), then system fields and the registry strategy's create path, then
// the object back to its external version and round trip through JSON.
func checkCreateDecode(t *testing.T, data []byte, serializer runtime.Serializer, target createTarget) {
	internalGV := schema.GroupVersion{Group: target.gvk.Group, Version: runtime.APIVersionInternal}
	decoder := legacyscheme.Codecs.DecoderToVersion(serializer, internalGV)
	defaultGVK := target.gvk
	obj, gvk, err := decoder.Decode(data, &defaultGVK, target.newObj())
	if err != nil && !runtime.IsStrictDecodingError(err) {
		return
	}
	if obj == nil {
		// A strict decoding error (unknown or duplicate fields) still returns the
		// object; the server rejects it only with fieldValidation=Strict.
		t.Fatalf("strict decoding error without an object: %v", err)
	}
	if gvk == nil || gvk.Empty() {
		t.Fatalf("decode into %s returned no kind for %T", target.gvk, obj)
	}

	// The create handler hands the object to the resource's strategy, which
	// type-asserts it: decoding into the resource's type yields that type or fails.
	if want := target.newObj(); reflect.TypeOf(obj) != reflect.TypeOf(want) {
		t.Fatalf("decoding a %s request body produced a %T, want %T", target.gvk.Kind, obj, want)
	}
	switch o := obj.(type) {
	case *core.Pod:
		// Upstream's pod validation with the options the pod strategy derives.
		opts := podutil.GetValidationOptionsFromPodSpecAndMeta(&o.Spec, nil, &o.ObjectMeta, nil)
		_ = corevalidation.ValidatePodCreate(o.DeepCopy(), opts)
	case *core.ConfigMap:
		_ = corevalidation.ValidateConfigMap(o.DeepCopy())
	}
	runCreatePath(t, target.strategy, obj.DeepCopyObject())

	// The internal object must convert back to its external version (the API
	// server does this for every response and for storage) and round trip.
	externalGV := schema.GroupVersion{Group: gvk.Group, Version: target.gvk.Version}
	if !fuzzScheme.IsVersionRegistered(externalGV) {
		return
	}
	ext, err := fuzzScheme.ConvertToVersion(obj.DeepCopyObject(), externalGV)
	if err != nil {
		// Conversion may refuse a well-formed internal object only with an error,
		// never a panic; nothing more to check.
		return
	}
	extGVK := ext.GetObjectKind().GroupVersionKind()
	if extGVK.Empty() {
		t.Fatalf("converted %T to %s without setting its kind", obj, externalGV)
	}
	checkRoundTrip(t, fuzzJSON, ext, extGVK)
}

// runCreatePath runs what the generic registry's Create does before storing an
// object: system fields, name generation, then rest.BeforeCreate (namespace
// checks, PrepareForCreate, Validate, ObjectMeta validation, Canonicalize).
func runCreatePath(t *testing.T, strategy rest.RESTCreateStrategy, obj runtime.Object) {
	t.Helper()
	accessor, err := metaAccessor(obj)
	if err != nil {
		t.Fatalf("%T has no object meta: %v", obj, err)
	}
	ns := accessor.GetNamespace()
	if ns == "" {
		ns = metav1.NamespaceDefault // the namespace in the request's URL
	}
	ctx := genericapirequest.WithNamespace(context.Background(), ns)
	rest.FillObjectMetaSystemFields(accessor)
	if accessor.GetName() == "" && accessor.GetGenerateName() != "" {
		accessor.SetName(names.SimpleNameGenerator.GenerateName(accessor.GetGenerateName()))
	}
	_ = rest.BeforeCreate(strategy, ctx, obj)
}

func metaAccessor(obj runtime.Object) (metav1.Object, error) {
	if m, ok := obj.(metav1.ObjectMetaAccessor); ok {
		return m.GetObjectMeta(), nil
	}
	return nil, fmt.Errorf("%T is not a metav1.ObjectMetaAccessor", obj)
}

const (
	seedPodJSON = `{
  "apiVersion": "v1",
  "kind": "Pod",
  "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}, "annotations": {"a": "b"}},
  "spec": {
    "containers": [{
      "name": "nginx",
      "image": "nginx:1.27",
      "ports": [{"containerPort": 80, "protocol": "TCP"}],
      "env": [{"name": "A", "value": "1"}, {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
      "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "0.1", "memory": "64e6"}},
      "livenessProbe": {"httpGet": {"path": "/", "port": "http"}, "initialDelaySeconds": 3},
      "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}]
    }],
    "initContainers": [{"name": "init", "image": "busybox", "command": ["sh", "-c", "true"]}],
    "volumes": [{"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 420}}],
    "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
    "securityContext": {"runAsUser": 1000, "fsGroup": 2000}
  },
  "status": {"phase": "Pending", "startTime": "2024-05-01T10:00:00Z"}
}`
	seedPodYAML = `apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  restartPolicy: Always
  containers:
  - name: nginx
    image: nginx:1.27
    args: ["--port", "8080"]
    ports:
    - containerPort: 8080
      name: http
    readinessProbe:
      tcpSocket: {port: 8080}
    resources:
      requests: {cpu: 100m, memory: 1Gi}
`
	seedConfigMapJSON = `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg","namespace":"default","creationTimestamp":"2024-05-01T10:00:00.123456Z"},"data":{"key":"value","multi":"a\nb"},"binaryData":{"bin":"AAEC"},"immutable":true}`
	seedConfigMapYAML = `apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
  generateName: cfg-
data:
  game.properties: |
    enemies=aliens
    lives=3
`
	seedDeploymentJSON = `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}},"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":"25%","maxUnavailable":1}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"nginx"}]}}}}`
	seedDeploymentYAML = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchExpressions:
    - {key: app, operator: In, values: [web]}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
`
	seedServiceJSON = `{"apiVersion":"v1","kind":"Service","metadata":{"name":"web"},"spec":{"type":"NodePort","selector":{"app":"web"},"ports":[{"name":"http","port":80,"targetPort":"http","nodePort":30080}],"ipFamilyPolicy":"PreferDualStack"}}`
	seedListJSON    = `{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}},  { "kind" : "Pod" } ]}`
)

// decodeSeeds are valid objects in every request format and malformed variants.
func decodeSeeds(tb testing.TB) [][]byte {
	seeds := []string{
		seedPodJSON, seedPodYAML, seedConfigMapJSON, seedConfigMapYAML,
		seedDeploymentJSON, seedDeploymentYAML, seedServiceJSON, seedListJSON,
		// Malformed or hostile.
		``,
		`{}`,
		`null`,
		`[]`,
		`{"apiVersion":"v1"}`,
		`{"kind":"Pod"}`,
		`{"apiVersion":"v1","kind":"NoSuchKind"}`,
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"},"spec":{"containers":[{"name":"c","image":"i"}]}`, // truncated
		`{"apiVersion":"v1","kind":"Pod","spec":{"containers":"not-a-list"}}`,
		`{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"c","image":"i","resources":{"limits":{"cpu":"1e1000"}}}]}}`,
		`{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"c","image":"i","resources":{"limits":{"cpu":"-0.000000001m"}}}]}}`,
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"dup","name":"dup2"},"spec":{"bogusField":1,"containers":[{"name":"c","image":"i","ports":[{"containerPort":99999999999}]}]}}`,
		`{"apiVersion":"v1","kind":"Pod","metadata":{"creationTimestamp":"2024-13-45T99:00:00Z","deletionTimestamp":"2024-05-01T10:00:00+02:00"}}`,
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"\xff\xfe","labels":{"\u0000":"\ud800"}}}`,
		`{"apiVersion":"v1","kind":"ConfigMap","binaryData":{"b":"not base64!"}}`,
		`{"apiVersion":"v1","kind":"Service","spec":{"ports":[{"port":80,"targetPort":1.5}]}}`,
		`{"apiVersion":"apps/v1","kind":"Deployment","spec":{"replicas":-1,"selector":{},"template":{"spec":{"containers":[null]}}}}`,
		`{"apiVersion":"__internal","kind":"Pod"}`,
		`{"ApiVersion":"v1","kind":"Pod","metadata":{"name":"x"}}`,
		`{"apiVersion":"v1","kind":"List","items":[{"a":"b&c<d>"},{ "e" : "f" },null]}`,
		`{"apiVersion":"v1","kind":"Status","status":"Failure","code":410,"reason":"Expired","details":{"causes":[{}]}}`,
		`{"type":"ADDED","object":{"apiVersion":"v1","kind":"Pod"}}`,
		"apiVersion: v1\nkind: Pod\nmetadata:\n  name: &a x\n  labels: {k: *a}\n",
		"apiVersion: v1\nkind: ConfigMap\ndata:\n  ? [a, b]\n  : c\n",
		"apiVersion: v1\nkind: Pod\n\tspec: {}\n",
		"---\napiVersion: v1\nkind: ConfigMap\n---\napiVersion: v1\nkind: Pod\n",
		"k8s\x00\x0a\x02v1\x12\x03Pod",
		"k8s\x00garbage",
		strings.Repeat("[", 10000),
		`{"apiVersion":"v1","kind":"ConfigMap","data":` + strings.Repeat(`{"a":`, 2000) + `1` + strings.Repeat(`}`, 2000) + `}`,
	}
	out := make([][]byte, 0, len(seeds)+3)
	for _, s := range seeds {
		out = append(out, []byte(s))
	}
	// The same objects as protobuf, the API server's third request format.
	for _, s := range []string{seedPodJSON, seedConfigMapJSON, seedDeploymentJSON} {
		obj, _, err := fuzzJSON.Decode([]byte(s), nil, nil)
		if err != nil {
			tb.Fatalf("seed does not decode: %v", err)
		}
		var buf bytes.Buffer
		if err := fuzzProto.Encode(obj, &buf); err != nil {
			tb.Fatalf("seed does not encode as protobuf: %v", err)
		}
		out = append(out, buf.Bytes())
	}
	return out
}

// FuzzPatch applies strategic merge patches (what `kubectl apply` and `kubectl
// patch` send by default) to a Pod the way the API server's patch handler does,
// and computes the two-way patch back. Neither may panic, and a successful
// application yields a JSON object.
func FuzzPatch(f *testing.F) {
	pod := []byte(seedPodJSON)
	for _, p := range []string{
		`{"metadata":{"labels":{"app":"api","new":"x"}}}`,
		`{"metadata":{"labels":{"app":null}}}`,
		`{"spec":{"containers":[{"name":"nginx","image":"nginx:1.28"}]}}`,
		`{"spec":{"containers":[{"name":"sidecar","image":"envoy"}]}}`,
		`{"spec":{"containers":[{"name":"nginx","$patch":"delete"}]}}`,
		`{"spec":{"$setElementOrder/containers":[{"name":"sidecar"},{"name":"nginx"}],"containers":[{"name":"sidecar","image":"envoy"}]}}`,
		`{"spec":{"containers":[{"name":"nginx","env":[{"name":"A","$patch":"replace","value":"2"}]}]}}`,
		`{"spec":{"$retainKeys":["containers"],"containers":[{"name":"nginx","image":"x"}]}}`,
		`{"metadata":{"$deleteFromPrimitiveList/finalizers":["a"],"finalizers":["b"]}}`,
		`{"spec":{"volumes":[{"name":"cfg","$patch":"replace","emptyDir":{}}]}}`,
		`{"spec":{"containers":{"$patch":"replace"}}}`,
		`{"$patch":"delete"}`,
		`{"$patch":"replace","spec":{}}`,
		`{"spec":{"containers":[{"$patch":"merge"}]}}`,
		`{"spec":{"containers":[{"name":"nginx","ports":[{"containerPort":"80"}]}]}}`,
		`{"spec":{"tolerations":[{"$patch":"delete"}],"$setElementOrder/tolerations":[1,2]}}`,
		`{"spec":{"containers":null}}`,
		`{"spec":null}`,
		`[]`,
		`null`,
		`"x"`,
		`{`,
		``,
	} {
		f.Add(pod, []byte(p))
	}
	f.Add([]byte(`{}`), []byte(`{"spec":{"containers":[{"name":"a"}]}}`))
	f.Add([]byte(`[1,2]`), []byte(`{"a":1}`))
	f.Add([]byte(`{"spec":{"containers":[{"name":"a"},{"name":"a"}]}}`), []byte(`{"spec":{"containers":[{"name":"a","$patch":"delete"}]}}`))
	f.Add([]byte(`{"spec":{"containers":[{"noname":1}]}}`), []byte(`{"spec":{"containers":[{"name":"a"}]}}`))

	schema, err := strategicpatch.NewPatchMetaFromStruct(&corev1.Pod{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, original, patch []byte) {
		patched, known, err := applyStrategicPatch(original, patch)
		if known != "" {
			t.Logf("known upstream strategicpatch panic on $setElementOrder (see applyStrategicPatch): %s", known)
			return
		}
		if err != nil {
			return
		}
		var asMap map[string]interface{}
		if err := json.Unmarshal(patched, &asMap); err != nil {
			t.Fatalf("patch applied but the result is not a JSON object: %v\nresult: %q", err, patched)
		}
		// What the patch handler does next: decode the result as a Pod. It may
		// fail, but must not panic.
		_, _, _ = fuzzStrictJSON.Decode(patched, &podGVK, &corev1.Pod{})
		// The reverse direction, which kubectl apply uses to compute patches, may
		// refuse but must not panic either.
		_, _ = strategicpatch.CreateTwoWayMergePatchUsingLookupPatchMeta(original, patched, schema)
	})
}

var podGVK = corev1.SchemeGroupVersion.WithKind("Pod")

// applyStrategicPatch is strategicpatch.StrategicMergePatch on a Pod. It re-panics
// on any panic except one known upstream bug, which it reports as known:
//
// k8s.io/apimachinery v0.32 strategicpatch panics ("hash of unhashable type
// map[string]interface {}" or "comparing uncomparable type map[string]interface
// {}") when a patch carries a $setElementOrder/<field> directive whose elements
// are objects, for a list that has no merge key (a primitive list, or an atomic
// list such as spec.tolerations), e.g. original {"spec":{"tolerations":[]}} with
// patch {"spec":{"$setElementOrder/tolerations":[{}]}}. The API server recovers
// the panic per request (it logs "apiserver panic'd") and aborts the response, so
// `kubectl patch` reports "stream error: ... INTERNAL_ERROR" instead of a 400.
func applyStrategicPatch(original, patch []byte) (patched []byte, known string, err error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		msg := fmt.Sprint(r)
		if _, isRuntime := r.(interface{ RuntimeError() }); isRuntime &&
			bytes.Contains(patch, []byte("$setElementOrder/")) &&
			(strings.Contains(msg, "unhashable type map[string]interface {}") || strings.Contains(msg, "uncomparable type map[string]interface {}")) {
			patched, known, err = nil, msg, nil
			return
		}
		panic(r)
	}()
	patched, err = strategicpatch.StrategicMergePatch(original, patch, &corev1.Pod{})
	return patched, "", err
}
