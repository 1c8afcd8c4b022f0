package e2e

// The command sequences the seed blog posts show, run with the real kubectl on
// their own YAML (test/e2e/testdata/seed*.yaml, kept as the posts wrote them).
// There is no node agent yet, so pods are stored but stay Pending and unscheduled.

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestKubectlSeed000AutoPod follows seed 000 §3.2: create -f, get -o wide,
// describe, delete -f on the two-container auto-pod with requests and limits.
func TestKubectlSeed000AutoPod(t *testing.T) {
	s := startKubectlServer(t)
	file := testdataPath(t, "seed000-auto-pod.yaml")

	mustEqual(t, "create -f", s.MustKubectl("create", "-f", file), "pod/auto-pod created")

	tb := parseTable(t, s.MustKubectl("get", "pod/auto-pod", "-o", "wide"))
	tb.wantHeader(t, "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES")
	if len(tb.Rows) != 1 {
		t.Fatalf("want one row, got %q", tb.Rows)
	}
	row := tb.row(t, "NAME", "auto-pod")
	wantCells(t, row, "READY", "0/2", "STATUS", "Pending", "RESTARTS", "0",
		"IP", "<none>", "NODE", "<none>", "NOMINATED NODE", "<none>", "READINESS GATES", "<none>")
	wantAge(t, row["AGE"])

	// The plain listing has the five narrow columns only.
	tb = parseTable(t, s.MustKubectl("get", "pod"))
	tb.wantHeader(t, "NAME", "READY", "STATUS", "RESTARTS", "AGE")
	wantCells(t, tb.row(t, "NAME", "auto-pod"), "READY", "0/2", "STATUS", "Pending", "RESTARTS", "0")

	// What the API stored: the seed's resources, ports and pull policy, plus
	// upstream's defaults.
	mustEqual(t, "containers", jsonpath(t, s,
		`{range .spec.containers[*]}{.name} {.image} {.imagePullPolicy} {.ports[0].containerPort}/{.ports[0].protocol} req={.resources.requests.cpu},{.resources.requests.memory} lim={.resources.limits.cpu},{.resources.limits.memory}{"\n"}{end}`,
		"pod", "auto-pod"),
		"auto-client auto-client Never 8079/TCP req=250m,64Mi lim=500m,128Mi\n"+
			"auto-serve auto-serve Never 8082/TCP req=250m,64Mi lim=500m,128Mi")
	mustEqual(t, "defaults", jsonpath(t, s,
		`{.status.phase} {.status.qosClass} {.spec.restartPolicy} {.spec.dnsPolicy} {.spec.schedulerName} {.spec.terminationGracePeriodSeconds} {.spec.serviceAccountName} {.spec.enableServiceLinks} {.spec.nodeName}|`,
		"pod", "auto-pod"),
		"Pending Burstable Always ClusterFirst default-scheduler 30 default true |")
	// Upstream's Priority admission gives every pod priority 0 and the default
	// preemption policy when no PriorityClass applies.
	mustEqual(t, "priority", jsonpath(t, s, `{.spec.priority} {.spec.preemptionPolicy}`, "pod", "auto-pod"), "0 PreemptLowerPriority")

	out := s.MustKubectl("describe", "pod/auto-pod")
	mustHaveLines(t, out, "Name: auto-pod", "Namespace: default", "Priority: 0", "Service Account: default", "Node: <none>")
	mustHaveLines(t, out, "Status: Pending", "IP:", "IPs: <none>", "Containers:", "auto-client:", "Image: auto-client",
		"Port: 8079/TCP", "Host Port: 0/TCP", "Limits:", "cpu: 500m", "memory: 128Mi", "Requests:", "cpu: 250m", "memory: 64Mi",
		"Environment: <none>", "Mounts:")
	mustHaveLines(t, out, "auto-serve:", "Image: auto-serve", "Port: 8082/TCP")
	mustHaveLines(t, out, "QoS Class: Burstable", "Node-Selectors: <none>",
		"Tolerations: node.kubernetes.io/not-ready:NoExecute op=Exists for 300s",
		"node.kubernetes.io/unreachable:NoExecute op=Exists for 300s")
	// The scheduler finds no node in this control-plane-only server and says so.
	Eventually(t, 20*time.Second, func() error {
		out := s.MustKubectl("describe", "pod/auto-pod")
		if !regexp.MustCompile(`(?m)^  Warning  FailedScheduling  \d+s +default-scheduler  no nodes available to schedule pods$`).MatchString(out) {
			return fmt.Errorf("no FailedScheduling event yet:\n%s", out[strings.Index(out, "Events:"):])
		}
		return nil
	})
	// Admission gave the pod the service account token volume.
	mustContain(t, out, "/var/run/secrets/kubernetes.io/serviceaccount from kube-api-access-", "ConfigMapName:           kube-root-ca.crt")

	// The Events section lists events about the pod: post the ones seed 000
	// shows (the scheduler and kubelet are not there yet to post them).
	uid := jsonpath(t, s, "{.metadata.uid}", "pod", "auto-pod")
	now := time.Now().UTC().Add(-38 * time.Second).Format(time.RFC3339)
	var events strings.Builder
	for i, e := range [][3]string{
		{"Scheduled", "default-scheduler", "Successfully assigned default/auto-pod to docker-desktop"},
		{"Pulled", "kubelet", `Container image "auto-client" already present on machine`},
		{"Created", "kubelet", "Created container auto-client"},
		{"Started", "kubelet", "Started container auto-client"},
	} {
		fmt.Fprintf(&events, `---
apiVersion: v1
kind: Event
metadata: {name: auto-pod.%d}
involvedObject: {kind: Pod, namespace: default, name: auto-pod, uid: %s, apiVersion: v1}
type: Normal
reason: %s
source: {component: %s}
message: '%s'
firstTimestamp: "%s"
lastTimestamp: "%s"
count: 1
`, i, uid, e[0], e[1], e[2], now, now)
	}
	s.MustKubectlIn(events.String(), "create", "-f", "-")
	out = s.MustKubectl("describe", "pod/auto-pod")
	ev := out[strings.Index(out, "Events:"):]
	mustHaveLines(t, ev,
		"Events:",
		"Type Reason Age From Message",
		"---- ------ ---- ---- -------")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^  Normal +Scheduled +\d+s +default-scheduler +Successfully assigned default/auto-pod to docker-desktop$`),
		regexp.MustCompile(`(?m)^  Normal +Pulled +\d+s +kubelet +Container image "auto-client" already present on machine$`),
		regexp.MustCompile(`(?m)^  Normal +Started +\d+s +kubelet +Started container auto-client$`),
	} {
		if !want.MatchString(ev) {
			t.Errorf("Events section lacks %s:\n%s", want, ev)
		}
	}
	tb = parseTable(t, s.MustKubectl("get", "events", "--field-selector", "involvedObject.name=auto-pod", "--sort-by", ".metadata.name"))
	tb.wantHeader(t, "LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE")
	wantCells(t, tb.row(t, "REASON", "Scheduled"), "TYPE", "Normal", "OBJECT", "pod/auto-pod",
		"MESSAGE", "Successfully assigned default/auto-pod to docker-desktop")

	mustEqual(t, "delete -f", s.MustKubectl("delete", "-f", file), `pod "auto-pod" deleted`)
	notFound(t, s, "", "pod", "auto-pod")
	out = kubectlFail(t, s, "", "delete", "-f", file)
	mustContain(t, out, `Error from server (NotFound): error when deleting "`+file+`": pods "auto-pod" not found`)
}

// TestKubectlSeed004Examples creates every manifest of seed 004 as written and
// checks what was stored and how kubectl shows it.
func TestKubectlSeed004Examples(t *testing.T) {
	srv := startKubectlServer(t)

	// createGetDelete is the posts' own loop: create -f, get, delete -f.
	createGetDelete := func(t *testing.T, s *Server, file string, created []string, check func(t *testing.T)) {
		t.Helper()
		path := testdataPath(t, file)
		mustEqual(t, "create -f "+file, s.MustKubectl("create", "-f", path), strings.Join(created, "\n"))
		if check != nil {
			check(t)
		}
		var deleted []string
		for _, c := range created {
			kind, name, _ := strings.Cut(strings.TrimSuffix(c, " created"), "/")
			deleted = append(deleted, fmt.Sprintf("%s %q deleted", kind, name))
		}
		mustEqual(t, "delete -f "+file, s.MustKubectl("delete", "-f", path), strings.Join(deleted, "\n"))
	}
	pendingRow := func(t *testing.T, s *Server, name, ready string) {
		t.Helper()
		tb := parseTable(t, s.MustKubectl("get", "pod", name))
		tb.wantHeader(t, "NAME", "READY", "STATUS", "RESTARTS", "AGE")
		wantCells(t, tb.row(t, "NAME", name), "READY", ready, "STATUS", "Pending", "RESTARTS", "0")
	}

	t.Run("job", func(t *testing.T) {
		s := on(t, srv)
		createGetDelete(t, s, "seed004-hello-job.yaml", []string{"job.batch/hello created"}, func(t *testing.T) {
			// "kubectl get jobs": no job controller yet, so nothing completed;
			// DURATION is empty until the job starts.
			out := s.MustKubectl("get", "jobs")
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 2 {
				t.Fatalf("get jobs: %q", out)
			}
			mustEqual(t, "header", squash(lines[0]), "NAME STATUS COMPLETIONS DURATION AGE")
			if !regexp.MustCompile(`^hello +Running +0/5 +\d+s$`).MatchString(lines[1]) {
				t.Errorf("get jobs row: %q", lines[1])
			}
			// Upstream's Job defaulting: a generated selector and template label.
			mustEqual(t, "job defaults", jsonpath(t, s,
				`{.spec.completions} {.spec.parallelism} {.spec.backoffLimit} {.spec.completionMode} {.spec.manualSelector} {.spec.template.spec.restartPolicy} {.spec.template.metadata.labels.job-name} {.spec.template.metadata.labels.batch\.kubernetes\.io/job-name}`,
				"job", "hello"),
				"5 1 6 NonIndexed false OnFailure hello hello")
			uid := jsonpath(t, s, "{.metadata.uid}", "job", "hello")
			mustEqual(t, "selector", jsonpath(t, s, "{.spec.selector.matchLabels.batch\\.kubernetes\\.io/controller-uid}", "job", "hello"), uid)
		})
		notFound(t, s, "", "jobs", "hello")
	})

	t.Run("lifecycle", func(t *testing.T) {
		s := on(t, srv)
		createGetDelete(t, s, "seed004-lifecycle.yaml", []string{"pod/lifecycle created"}, func(t *testing.T) {
			pendingRow(t, s, "lifecycle", "0/1")
			mustEqual(t, "hooks", jsonpath(t, s,
				`{.spec.containers[0].lifecycle.postStart.exec.command[2]}|{.spec.containers[0].lifecycle.preStop.exec.command[2]}`, "pod", "lifecycle"),
				"echo Hello from the postStart handler > /usr/share/message|nginx -s quit; while killall -0 nginx; do sleep 1; done")
			// Limits only: requests default to the limits, QoS Guaranteed.
			mustEqual(t, "requests", jsonpath(t, s,
				`{.spec.containers[0].resources.requests.cpu} {.spec.containers[0].resources.requests.memory} {.status.qosClass}`, "pod", "lifecycle"),
				"500m 128Mi Guaranteed")
			out := s.MustKubectl("describe", "pod", "lifecycle")
			mustHaveLines(t, out, "Labels: name=lifecycle")
			mustHaveLines(t, out, "QoS Class: Guaranteed")
		})
	})

	t.Run("init-container", func(t *testing.T) {
		s := on(t, srv)
		createGetDelete(t, s, "seed004-init-container.yaml", []string{"pod/myapp-pod created"}, func(t *testing.T) {
			// READY counts app containers only.
			pendingRow(t, s, "myapp-pod", "0/1")
			mustEqual(t, "containers", jsonpath(t, s,
				`{.spec.initContainers[0].name}={.spec.initContainers[0].command[2]} {.spec.containers[0].name}={.spec.containers[0].command[2]}`, "pod", "myapp-pod"),
				"init-container=date && sleep 10 myapp-container=date && sleep 3600")
			out := s.MustKubectl("describe", "pod", "myapp-pod")
			mustHaveLines(t, out, "Init Containers:", "init-container:", "Image: busybox:1.28")
			mustContain(t, out, "\nContainers:\n  myapp-container:\n")
			mustHaveLines(t, out, "Labels: name=myapp")
		})
	})

	t.Run("liveness-probe", func(t *testing.T) {
		s := on(t, srv)
		createGetDelete(t, s, "seed004-liveness-http.yaml", []string{"pod/myapp created"}, func(t *testing.T) {
			pendingRow(t, s, "myapp", "0/1")
			// :latest gets imagePullPolicy Always; the probe's unset fields get defaults.
			mustEqual(t, "probe", jsonpath(t, s,
				`{.spec.containers[0].imagePullPolicy} {.spec.containers[0].livenessProbe.httpGet.scheme} {.spec.containers[0].livenessProbe.timeoutSeconds} {.spec.containers[0].livenessProbe.successThreshold} {.spec.containers[0].livenessProbe.failureThreshold}`, "pod", "myapp"),
				"Always HTTP 1 1 3")
			mustHaveLines(t, s.MustKubectl("describe", "pod", "myapp"),
				"Liveness: http-get http://:8080/healthz delay=3s timeout=1s period=3s #success=1 #failure=3")
		})
	})

	t.Run("command-args", func(t *testing.T) {
		s := on(t, srv)
		createGetDelete(t, s, "seed004-printenv.yaml", []string{"pod/myapp created"}, func(t *testing.T) {
			mustEqual(t, "command", jsonpath(t, s, `{.spec.containers[0].command} {.spec.containers[0].args} {.spec.restartPolicy}`, "pod", "myapp"),
				`["printenv"] ["HOSTNAME","KUBERNETES_PORT"] OnFailure`)
			mustHaveLines(t, s.MustKubectl("describe", "pod", "myapp"), "Command:", "printenv", "Args:", "HOSTNAME", "KUBERNETES_PORT")
		})
		createGetDelete(t, s, "seed004-env-args.yaml", []string{"pod/myapp created"}, func(t *testing.T) {
			mustEqual(t, "args", jsonpath(t, s, `{.spec.containers[0].args[0]}|{.spec.containers[0].env[0].value}`, "pod", "myapp"),
				"$(MESSAGE)|hello world")
			mustHaveLines(t, s.MustKubectl("describe", "pod", "myapp"), "Environment:", "MESSAGE: hello world")
		})
	})

	t.Run("dependent-env", func(t *testing.T) {
		s := on(t, srv)
		createGetDelete(t, s, "seed004-dependent-env.yaml", []string{"pod/myapp created"}, func(t *testing.T) {
			// $(VAR) references are stored as written; the node expands them.
			mustEqual(t, "env", jsonpath(t, s, `{range .spec.containers[0].env[*]}{.name}={.value}{"\n"}{end}`, "pod", "myapp"),
				"SERVICE_IP=192.168.99.102\nSERVICE_PORT=31111\n"+
					"UNCHANGED_REFERENCE=$(PROTOCAL)://$(SERVICE_IP):$(SERVICE_PORT)\nPROTOCAL=https\n"+
					"SERVICE=$(PROTOCAL)://$(SERVICE_IP):$(SERVICE_PORT)\nESCAPED_SERVICE=$$(PROTOCAL)://$(SERVICE_IP):$(SERVICE_PORT)")
			mustHaveLines(t, s.MustKubectl("describe", "pod", "myapp"),
				"Environment:",
				"SERVICE_IP: 192.168.99.102",
				"SERVICE_PORT: 31111",
				"UNCHANGED_REFERENCE: $(PROTOCAL)://$(SERVICE_IP):$(SERVICE_PORT)",
				"PROTOCAL: https",
				"SERVICE: $(PROTOCAL)://$(SERVICE_IP):$(SERVICE_PORT)",
				"ESCAPED_SERVICE: $$(PROTOCAL)://$(SERVICE_IP):$(SERVICE_PORT)")
		})
	})

	t.Run("cpu-resources", func(t *testing.T) {
		s := on(t, srv)
		// As printed in the post, a tab indents a comment and the line after it:
		// YAML forbids that, and kubectl says so without sending anything.
		path := testdataPath(t, "seed004-cpu-as-written.yaml")
		out := kubectlFail(t, s, "", "create", "-f", path)
		mustEqual(t, "tabbed yaml", out,
			"error: error parsing "+path+": error converting YAML to JSON: yaml: line 14: found character that cannot start any token")
		notFound(t, s, "", "pod", "myapp")
		// With the tab replaced by spaces it is accepted: cpu "0.5" is 500m.
		fixed := strings.ReplaceAll(testdata(t, "seed004-cpu-as-written.yaml"), "\t", "  ")
		mustEqual(t, "create fixed", s.MustKubectlIn(fixed, "create", "-f", "-"), "pod/myapp created")
		mustEqual(t, "resources", jsonpath(t, s,
			`{.spec.containers[0].resources.requests.cpu} {.spec.containers[0].resources.requests.memory} {.spec.containers[0].resources.limits.cpu} {.spec.containers[0].args} {.status.qosClass}`, "pod", "myapp"),
			`500m 128Mi 1 ["-cpus","2"] Burstable`)
		mustHaveLines(t, s.MustKubectl("describe", "pod", "myapp"), "Limits:", "cpu: 1", "memory: 128Mi", "Requests:", "cpu: 500m", "memory: 128Mi")
		mustEqual(t, "delete", s.MustKubectl("delete", "pod", "myapp"), `pod "myapp" deleted`)
	})

	t.Run("node-affinity", func(t *testing.T) {
		s := on(t, srv)
		// No nodes yet: `kubectl get nodes --show-labels` finds none.
		r := s.KubectlRun("", "get", "nodes", "--show-labels")
		if r.Err != nil {
			t.Fatalf("get nodes: %v %s", r.Err, r.Stderr)
		}
		mustEqual(t, "get nodes stdout", r.Stdout, "")
		mustEqual(t, "get nodes stderr", r.Stderr, "No resources found")
		out := kubectlFail(t, s, "", "label", "nodes", "node-1", "disktype=ssd")
		mustEqual(t, "label missing node", out, `Error from server (NotFound): nodes "node-1" not found`)

		createGetDelete(t, s, "seed004-node-affinity.yaml", []string{"pod/myapp created"}, func(t *testing.T) {
			pendingRow(t, s, "myapp", "0/1")
			mustEqual(t, "affinity", jsonpath(t, s,
				`{.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0]}`, "pod", "myapp"),
				`{"key":"disktype","operator":"In","values":["ssd"]}`)
			mustEqual(t, "image", jsonpath(t, s, `{.spec.containers[0].image}`, "pod", "myapp"), "<Image>")
		})
	})

	t.Run("configmap-envfrom", func(t *testing.T) {
		s := on(t, srv)
		createGetDelete(t, s, "seed004-configmap-envfrom.yaml",
			[]string{"configmap/my-db-config created", "pod/myapp created"}, func(t *testing.T) {
				tb := parseTable(t, s.MustKubectl("get", "configmap", "my-db-config"))
				tb.wantHeader(t, "NAME", "DATA", "AGE")
				wantCells(t, tb.row(t, "NAME", "my-db-config"), "DATA", "1")
				mustEqual(t, "data", jsonpath(t, s, "{.data.db-url}", "cm", "my-db-config"), "localhost")
				mustHaveLines(t, s.MustKubectl("describe", "pod", "myapp"),
					"Environment Variables from:", "my-db-config ConfigMap Optional: false")
			})
	})

	t.Run("privileged", func(t *testing.T) {
		s := on(t, srv)
		createGetDelete(t, s, "seed004-privileged.yaml", []string{"pod/nginx created"}, func(t *testing.T) {
			pendingRow(t, s, "nginx", "0/1")
			mustEqual(t, "privileged", jsonpath(t, s, "{.spec.containers[0].securityContext.privileged}", "pod", "nginx"), "true")
		})
	})

	t.Run("run-as-user", func(t *testing.T) {
		s := on(t, srv)
		createGetDelete(t, s, "seed004-run-as-user.yaml", []string{"pod/myapp created"}, func(t *testing.T) {
			pendingRow(t, s, "myapp", "0/1")
			mustEqual(t, "securityContext", jsonpath(t, s,
				`{.spec.securityContext.runAsUser} {.spec.securityContext.runAsGroup} {.spec.securityContext.fsGroup} {.spec.containers[0].securityContext.allowPrivilegeEscalation} {.spec.volumes[0].name} {.spec.containers[0].volumeMounts[0].mountPath}`, "pod", "myapp"),
				"1000 3000 2000 false security /data/demo")
			mustHaveLines(t, s.MustKubectl("describe", "pod", "myapp"), "security:", "Type: EmptyDir (a temporary directory that shares a pod's lifetime)")
		})
	})

	// Nothing is left behind: the default namespace holds no pods.
	r := srv.KubectlRun("", "get", "pods")
	mustEqual(t, "no pods", r.Stdout+r.Stderr, "No resources found in default namespace.")
}

// TestKubectlSeed001Workflow follows seed 001's imperative sequence: run,
// create deployment, get all, scale both ways, expose, describe svc, edit the
// service to NodePort, set image, delete.
func TestKubectlSeed001Workflow(t *testing.T) {
	s := startKubectlServer(t)
	waitKubernetesService(t, s)

	mustEqual(t, "run", s.MustKubectl("run", "nginx", "--image=myapp:v1"), "pod/nginx created")
	mustEqual(t, "run labels", jsonpath(t, s, "{.metadata.labels}", "pod", "nginx"), `{"run":"nginx"}`)
	mustEqual(t, "create deployment", s.MustKubectl("create", "deployment", "myapp", "--image=myapp:v1", "--replicas=3"), "deployment.apps/myapp created")
	// "kubectl get pod -n kube-system" / "-n default".
	r := s.KubectlRun("", "get", "pod", "-n", "kube-system", "-o", "wide")
	mustEqual(t, "kube-system pods", r.Stdout+r.Stderr, "No resources found in kube-system namespace.")
	wantCells(t, parseTable(t, s.MustKubectl("get", "pod", "-n", "default")).row(t, "NAME", "nginx"), "READY", "0/1", "STATUS", "Pending")
	mustHaveLines(t, s.MustKubectl("describe", "deployments.apps", "myapp"),
		"Selector: app=myapp",
		"Replicas: 3 desired | 0 updated | 0 total | 0 available | 0 unavailable",
		"StrategyType: RollingUpdate",
		"MinReadySeconds: 0",
		"RollingUpdateStrategy: 25% max unavailable, 25% max surge",
		"Pod Template:",
		"Labels: app=myapp",
		"Containers:",
		"myapp:",
		"Image: myapp:v1")

	tb := parseTable(t, s.MustKubectl("get", "deployments.apps"))
	tb.wantHeader(t, "NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE")
	wantCells(t, tb.row(t, "NAME", "myapp"), "READY", "0/3", "UP-TO-DATE", "0", "AVAILABLE", "0")

	tb = parseTable(t, s.MustKubectl("get", "deploy", "myapp", "-o", "wide"))
	tb.wantHeader(t, "NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR")
	wantCells(t, tb.row(t, "NAME", "myapp"), "CONTAINERS", "myapp", "IMAGES", "myapp:v1", "SELECTOR", "app=myapp")

	// Both spellings of scale from the post.
	mustEqual(t, "scale", s.MustKubectl("scale", "deployment", "--replicas=2", "myapp"), "deployment.apps/myapp scaled")
	mustEqual(t, "replicas", jsonpath(t, s, "{.spec.replicas}", "deploy", "myapp"), "2")
	mustEqual(t, "scale", s.MustKubectl("scale", "deployment", "myapp", "--replicas=4"), "deployment.apps/myapp scaled")
	tb = parseTable(t, s.MustKubectl("get", "deploy"))
	wantCells(t, tb.row(t, "NAME", "myapp"), "READY", "0/4")
	// The scale subresource answers with autoscaling/v1 Scale.
	mustEqual(t, "scale subresource", jsonpath(t, s, "{.kind} {.spec.replicas} {.status.selector}", "deploy", "myapp", "--subresource=scale"),
		"Scale 4 app=myapp")
	// --current-replicas is a precondition.
	out := kubectlFail(t, s, "", "scale", "deployment", "myapp", "--current-replicas=3", "--replicas=1")
	mustContain(t, out, "error: Expected replicas to be 3, was 4")
	mustEqual(t, "replicas", jsonpath(t, s, "{.spec.replicas}", "deploy", "myapp"), "4")

	out = s.MustKubectl("get", "all")
	mustContain(t, out, "NAME        READY   STATUS    RESTARTS   AGE\npod/nginx   0/1     Pending   0          ")
	mustContain(t, out, "\n\nNAME                 TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)   AGE\nservice/kubernetes   ClusterIP   10.43.0.1    <none>        443/TCP   ")
	mustContain(t, out, "\n\nNAME                    READY   UP-TO-DATE   AVAILABLE   AGE\ndeployment.apps/myapp   0/4     0            0           ")

	mustEqual(t, "expose", s.MustKubectl("expose", "deployment", "myapp", "--port=80", "--target-port=80"), "service/myapp exposed")
	tb = parseTable(t, s.MustKubectl("get", "svc"))
	tb.wantHeader(t, "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE")
	wantCells(t, tb.row(t, "NAME", "kubernetes"), "TYPE", "ClusterIP", "CLUSTER-IP", "10.43.0.1", "EXTERNAL-IP", "<none>", "PORT(S)", "443/TCP")
	row := tb.row(t, "NAME", "myapp")
	wantCells(t, row, "TYPE", "ClusterIP", "EXTERNAL-IP", "<none>", "PORT(S)", "80/TCP")
	ip := row["CLUSTER-IP"]
	if !regexp.MustCompile(`^10\.43\.\d+\.\d+$`).MatchString(ip) || ip == "10.43.0.1" {
		t.Errorf("myapp CLUSTER-IP %q not a fresh address in 10.43.0.0/16", ip)
	}

	out = s.MustKubectl("describe", "svc", "myapp")
	mustHaveLines(t, out, "Name: myapp", "Namespace: default", "Labels: app=myapp", "Annotations: <none>", "Selector: app=myapp",
		"Type: ClusterIP", "IP Family Policy: SingleStack", "IP Families: IPv4", "IP: "+ip, "IPs: "+ip,
		"Port: <unset> 80/TCP", "TargetPort: 80/TCP", "Endpoints: <none>", "Session Affinity: None",
		"Internal Traffic Policy: Cluster", "Events: <none>")

	// "kubectl edit svc nginx ##type改成NodePort": the editor changes the type.
	editor := editorScript(t, `sed -i 's/^  type: ClusterIP$/  type: NodePort/' "$1"`)
	r = s.KubectlEnv([]string{"KUBE_EDITOR=" + editor}, "", "edit", "svc", "myapp")
	if r.Err != nil {
		t.Fatalf("edit: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
	mustEqual(t, "edit", r.Stdout, "service/myapp edited")
	tb = parseTable(t, s.MustKubectl("get", "svc", "myapp"))
	row = tb.row(t, "NAME", "myapp")
	wantCells(t, row, "TYPE", "NodePort", "CLUSTER-IP", ip)
	m := regexp.MustCompile(`^80:(\d+)/TCP$`).FindStringSubmatch(row["PORT(S)"])
	if m == nil || m[1] < "30000" || m[1] > "32767" || len(m[1]) != 5 {
		t.Errorf("PORT(S) %q: want 80:<30000-32767>/TCP", row["PORT(S)"])
	}

	// An editor that changes nothing: upstream says "Edit cancelled".
	noop := editorScript(t, `true`)
	r = s.KubectlEnv([]string{"KUBE_EDITOR=" + noop}, "", "edit", "svc", "myapp")
	if r.Err != nil {
		t.Fatalf("edit no-op: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
	mustEqual(t, "edit no-op", r.Stdout+r.Stderr, "Edit cancelled, no changes made.")

	// The other way the post shows: NodePort straight from expose.
	s.MustKubectl("create", "deployment", "nginx", "--image=myapp:v1")
	mustEqual(t, "expose NodePort", s.MustKubectl("expose", "deployment", "nginx", "--port=80", "--target-port=80", "--type=NodePort"), "service/nginx exposed")
	row = parseTable(t, s.MustKubectl("get", "svc", "nginx")).row(t, "NAME", "nginx")
	wantCells(t, row, "TYPE", "NodePort", "EXTERNAL-IP", "<none>")
	if !regexp.MustCompile(`^80:3\d{4}/TCP$`).MatchString(row["PORT(S)"]) || row["PORT(S)"] == "80:"+m[1]+"/TCP" {
		t.Errorf("nginx PORT(S) %q: want a fresh 80:<nodePort>/TCP", row["PORT(S)"])
	}
	s.MustKubectl("delete", "deployment", "nginx")
	s.MustKubectl("delete", "svc", "nginx")

	mustEqual(t, "set image", s.MustKubectl("set", "image", "deployment/myapp", "myapp=myapp:v2"), "deployment.apps/myapp image updated")
	mustEqual(t, "image", jsonpath(t, s, "{.spec.template.spec.containers[0].image}", "deploy", "myapp"), "myapp:v2")
	out = kubectlFail(t, s, "", "set", "image", "deployment/myapp", "nosuch=myapp:v3")
	mustContain(t, out, `error: unable to find container named "nosuch"`)

	mustEqual(t, "delete pod", s.MustKubectl("delete", "pod", "nginx"), `pod "nginx" deleted`)
	mustEqual(t, "delete deployment", s.MustKubectl("delete", "deployments.apps", "myapp"), `deployment.apps "myapp" deleted`)
	mustEqual(t, "delete svc", s.MustKubectl("delete", "svc", "myapp"), `service "myapp" deleted`)
	notFound(t, s, "", "deploy", "myapp")
	notFound(t, s, "", "svc", "myapp")
	r = s.KubectlRun("", "get", "pod")
	mustEqual(t, "get pod after delete", r.Stdout+r.Stderr, "No resources found in default namespace.")
}
