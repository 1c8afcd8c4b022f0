package e2e

// Bad input is refused with upstream's exact words, and nothing is written.

import (
	"strings"
	"testing"
)

func TestKubectlValidation(t *testing.T) {
	srv := startKubectlServer(t)

	long := strings.Repeat("a", 254)
	for _, tc := range []struct {
		name     string
		manifest string
		args     []string // extra kubectl args
		want     string   // the whole output, exactly
		resource string   // what must not exist afterwards
		obj      string
	}{
		{
			name:     "missing image",
			manifest: "apiVersion: v1\nkind: Pod\nmetadata: {name: noimage}\nspec:\n  containers: [{name: app}]\n",
			want:     `The Pod "noimage" is invalid: spec.containers[0].image: Required value`,
			resource: "pod", obj: "noimage",
		},
		{
			name:     "duplicate container name across init and app containers",
			manifest: "apiVersion: v1\nkind: Pod\nmetadata: {name: dup}\nspec:\n  initContainers: [{name: app, image: busybox}]\n  containers: [{name: app, image: busybox}]\n",
			want:     `The Pod "dup" is invalid: spec.initContainers[0].name: Duplicate value: "app"`,
			resource: "pod", obj: "dup",
		},
		{
			name:     "duplicate container name",
			manifest: "apiVersion: v1\nkind: Pod\nmetadata: {name: dup2}\nspec:\n  containers: [{name: app, image: busybox}, {name: app, image: busybox}]\n",
			want:     `The Pod "dup2" is invalid: spec.containers[1].name: Duplicate value: "app"`,
			resource: "pod", obj: "dup2",
		},
		{
			name:     "invalid DNS-1123 name",
			manifest: "apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name}\nspec:\n  containers: [{name: app, image: busybox}]\n",
			want:     `The Pod "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
			resource: "pod", obj: "Bad_Name",
		},
		{
			name:     "invalid container name",
			manifest: "apiVersion: v1\nkind: Pod\nmetadata: {name: badctr}\nspec:\n  containers: [{name: App_1, image: busybox}]\n",
			want:     `The Pod "badctr" is invalid: spec.containers[0].name: Invalid value: "App_1": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`,
			resource: "pod", obj: "badctr",
		},
		{
			name:     "bad quantity",
			manifest: "apiVersion: v1\nkind: Pod\nmetadata: {name: badqty}\nspec:\n  containers:\n  - name: app\n    image: busybox\n    resources: {limits: {cpu: lots}}\n",
			want:     `Error from server (BadRequest): error when creating "STDIN": Pod in version "v1" cannot be handled as a Pod: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'`,
			resource: "pod", obj: "badqty",
		},
		{
			name:     "requests above limits",
			manifest: "apiVersion: v1\nkind: Pod\nmetadata: {name: overreq}\nspec:\n  containers:\n  - name: app\n    image: busybox\n    resources: {requests: {memory: 256Mi}, limits: {memory: 128Mi}}\n",
			want:     `The Pod "overreq" is invalid: spec.containers[0].resources.requests: Invalid value: "256Mi": must be less than or equal to memory limit of 128Mi`,
			resource: "pod", obj: "overreq",
		},
		{
			name:     "invalid restartPolicy",
			manifest: "apiVersion: v1\nkind: Pod\nmetadata: {name: badrestart}\nspec:\n  restartPolicy: Sometimes\n  containers: [{name: app, image: busybox}]\n",
			want:     `The Pod "badrestart" is invalid: spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"`,
			resource: "pod", obj: "badrestart",
		},
		{
			name:     "deployment selector does not match template labels",
			manifest: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: mismatch}\nspec:\n  selector: {matchLabels: {app: a}}\n  template:\n    metadata: {labels: {app: b}}\n    spec:\n      containers: [{name: app, image: busybox}]\n",
			want:     "The Deployment \"mismatch\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"b\"}: `selector` does not match template `labels`",
			resource: "deploy", obj: "mismatch",
		},
		{
			name:     "deployment without selector",
			manifest: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: nosel}\nspec:\n  template:\n    metadata: {labels: {app: b}}\n    spec:\n      containers: [{name: app, image: busybox}]\n",
			want:     "The Deployment \"nosel\" is invalid: \n* spec.selector: Required value\n* spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"b\"}: `selector` does not match template `labels`",
			resource: "deploy", obj: "nosel",
		},
		{
			name:     "port out of range",
			manifest: "apiVersion: v1\nkind: Pod\nmetadata: {name: badport}\nspec:\n  containers: [{name: app, image: busybox, ports: [{containerPort: 70000}]}]\n",
			want:     `The Pod "badport" is invalid: spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive`,
			resource: "pod", obj: "badport",
		},
		{
			name:     "service port out of range",
			manifest: "apiVersion: v1\nkind: Service\nmetadata: {name: badsvc}\nspec:\n  ports: [{port: 0}]\n",
			want:     "The Service \"badsvc\" is invalid: \n* spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive\n* spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
			resource: "svc", obj: "badsvc",
		},
		{
			name:     "name over 253 characters",
			manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + long + "}\n",
			want:     `The ConfigMap "` + long + `" is invalid: metadata.name: Invalid value: "` + long + `": must be no more than 253 characters`,
			resource: "cm", obj: long,
		},
		{
			name:     "malformed YAML",
			manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: malformed\n data: [\n",
			want:     `error: error parsing STDIN: error converting YAML to JSON: yaml: line 4: did not find expected key`,
			resource: "cm", obj: "malformed",
		},
		{
			// kubectl's client-side check asks the server whether an unknown kind
			// is a CRD (apiextensions.k8s.io) before it reports the missing mapping.
			name:     "wrong kind",
			manifest: "apiVersion: v1\nkind: Pood\nmetadata: {name: wrongkind}\n",
			want:     "error: resource mapping not found for name: \"wrongkind\" namespace: \"\" from \"STDIN\": no matches for kind \"Pood\" in version \"v1\"\nensure CRDs are installed first",
			resource: "pod", obj: "wrongkind",
		},
		{
			// Without client-side validation kubectl goes straight to the mapping.
			name:     "wrong kind, --validate=false",
			manifest: "apiVersion: v1\nkind: Pood\nmetadata: {name: wrongkind}\n",
			args:     []string{"--validate=false"},
			want:     "error: resource mapping not found for name: \"wrongkind\" namespace: \"\" from \"STDIN\": no matches for kind \"Pood\" in version \"v1\"\nensure CRDs are installed first",
			resource: "pod", obj: "wrongkind",
		},
		{
			name:     "wrong apiVersion",
			manifest: "apiVersion: apps/v2\nkind: Deployment\nmetadata: {name: wrongversion}\n",
			want:     "error: resource mapping not found for name: \"wrongversion\" namespace: \"\" from \"STDIN\": no matches for kind \"Deployment\" in version \"apps/v2\"\nensure CRDs are installed first",
			resource: "deploy", obj: "wrongversion",
		},
		{
			name:     "group not served",
			manifest: "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: noingress}\n",
			want:     "error: resource mapping not found for name: \"noingress\" namespace: \"\" from \"STDIN\": no matches for kind \"Ingress\" in version \"networking.k8s.io/v1\"\nensure CRDs are installed first",
		},
		{
			name:     "missing kind",
			manifest: "apiVersion: v1\nmetadata: {name: nokind}\n",
			want:     `error: error validating "STDIN": error validating data: kind not set; if you choose to ignore these errors, turn validation off with --validate=false`,
			resource: "cm", obj: "nokind",
		},
		{
			name:     "unknown field, strict",
			manifest: "apiVersion: v1\nkind: Pod\nmetadata: {name: unknownfield}\nspec:\n  foo: bar\n  containers: [{name: app, image: busybox}]\n",
			want:     `Error from server (BadRequest): error when creating "STDIN": Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "spec.foo"`,
			resource: "pod", obj: "unknownfield",
		},
		{
			name:     "misspelt nested field, strict",
			manifest: "apiVersion: v1\nkind: Pod\nmetadata: {name: unknown2}\nspec:\n  containers:\n  - name: app\n    image: busybox\n    imagePullPolisy: Never\n",
			want:     `Error from server (BadRequest): error when creating "STDIN": Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "spec.containers[0].imagePullPolisy"`,
			resource: "pod", obj: "unknown2",
		},
		{
			name:     "wrong type",
			manifest: "apiVersion: v1\nkind: Pod\nmetadata: {name: wrongtype}\nspec:\n  containers: {name: app, image: busybox}\n",
			want:     `Error from server (BadRequest): error when creating "STDIN": Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal object into Go struct field PodSpec.spec.containers of type []v1.Container`,
			resource: "pod", obj: "wrongtype",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := on(t, srv)
			out := kubectlFail(t, s, tc.manifest, append([]string{"create", "-f", "-"}, tc.args...)...)
			mustEqual(t, "kubectl create", out, tc.want)
			if tc.resource != "" {
				notFound(t, s, "", tc.resource, tc.obj)
			}
		})
	}

	t.Run("unknown field, --validate=warn", func(t *testing.T) {
		s := on(t, srv)
		r := s.KubectlRun("apiVersion: v1\nkind: Pod\nmetadata: {name: warned}\nspec:\n  foo: bar\n  containers: [{name: app, image: busybox}]\n",
			"create", "--validate=warn", "-f", "-")
		if r.Err != nil {
			t.Fatalf("create --validate=warn: %v %s", r.Err, r.Stderr)
		}
		mustEqual(t, "stdout", r.Stdout, "pod/warned created")
		mustEqual(t, "stderr", r.Stderr, `Warning: unknown field "spec.foo"`)
		// The unknown field was dropped, the rest stored.
		mustEqual(t, "stored", jsonpath(t, s, "{.spec.containers[0].image} {.spec.foo}", "pod", "warned"), "busybox ")
		// --validate=false (ignore) says nothing at all.
		r = s.KubectlRun("apiVersion: v1\nkind: Pod\nmetadata: {name: ignored}\nspec:\n  foo: bar\n  containers: [{name: app, image: busybox}]\n",
			"create", "--validate=false", "-f", "-")
		if r.Err != nil || r.Stdout != "pod/ignored created\n" || r.Stderr != "" {
			t.Errorf("create --validate=false: %v %q %q", r.Err, r.Stdout, r.Stderr)
		}
		// apply uses the same server-side validation.
		out := kubectlFail(t, s, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: strictapply}\ndata: {a: b}\nextra: 1\n", "apply", "-f", "-")
		mustContain(t, out, `Error from server (BadRequest): error when creating "STDIN": ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "extra"`)
		notFound(t, s, "", "cm", "strictapply")
	})

	t.Run("body over 3 MiB", func(t *testing.T) {
		s := on(t, srv)
		big := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: huge}\ndata:\n  big: " + strings.Repeat("x", 4<<20) + "\n"
		out := kubectlFail(t, s, big, "create", "-f", "-")
		mustEqual(t, "4 MiB create", out, `Error from server (RequestEntityTooLarge): error when creating "STDIN": Request entity too large: limit is 3145728`)
		notFound(t, s, "", "cm", "huge")
		// Under the body limit but over a ConfigMap's 1 MiB: validation refuses it.
		mid := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: large}\ndata:\n  big: " + strings.Repeat("x", 2<<20) + "\n"
		out = kubectlFail(t, s, mid, "create", "-f", "-")
		mustEqual(t, "2 MiB create", out, `The ConfigMap "large" is invalid: []: Too long: may not be more than 1048576 bytes`)
		notFound(t, s, "", "cm", "large")
		// Just under 1 MiB of data is fine.
		ok := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fits}\ndata:\n  big: " + strings.Repeat("x", 1<<20-16) + "\n"
		mustEqual(t, "1 MiB create", s.MustKubectlIn(ok, "create", "-f", "-"), "configmap/fits created")
		mustEqual(t, "size", jsonpath(t, s, "{.metadata.name}", "cm", "fits"), "fits")
		if n := len(jsonpath(t, s, "{.data.big}", "cm", "fits")); n != 1<<20-16 {
			t.Errorf("stored %d bytes, want %d", n, 1<<20-16)
		}
	})

	t.Run("nothing written", func(t *testing.T) {
		s := on(t, srv)
		// After every refusal above, the only pods are the two accepted ones.
		mustEqual(t, "pods", s.MustKubectl("get", "pods", "-o", "name"), "pod/ignored\npod/warned")
		mustEqual(t, "deployments", s.KubectlRun("", "get", "deploy").Stderr, "No resources found in default namespace.")
	})
}
