package e2e

// Service address allocation: ClusterIPs from 10.43.0.0/16, NodePorts from
// 30000-32767, conflicts refused with upstream's words, deletion frees both.

import (
	"fmt"
	"net"
	"strconv"
	"testing"
)

func TestKubectlServiceAllocation(t *testing.T) {
	srv := startKubectlServer(t)
	waitKubernetesService(t, srv)
	_, serviceNet, _ := net.ParseCIDR("10.43.0.0/16")

	t.Run("cluster IPs", func(t *testing.T) {
		s := on(t, srv)
		seen := map[string]string{"10.43.0.1": "kubernetes"}
		for i := 0; i < 5; i++ {
			name := fmt.Sprintf("ip%d", i)
			mustEqual(t, "create", s.MustKubectl("create", "service", "clusterip", name, "--tcp=80:8080"), "service/"+name+" created")
			ip := jsonpath(t, s, "{.spec.clusterIP}", "svc", name)
			if p := net.ParseIP(ip); p == nil || !serviceNet.Contains(p) {
				t.Errorf("%s: clusterIP %q not in 10.43.0.0/16", name, ip)
			}
			if other, dup := seen[ip]; dup {
				t.Errorf("%s got clusterIP %s, already %s's", name, ip, other)
			}
			seen[ip] = name
			mustEqual(t, "clusterIPs", jsonpath(t, s, "{.spec.clusterIPs} {.spec.ipFamilies} {.spec.ipFamilyPolicy} {.spec.ports[0].targetPort}", "svc", name),
				`["`+ip+`"] ["IPv4"] SingleStack 8080`)
		}
		tb := parseTable(t, s.MustKubectl("get", "svc", "ip0"))
		wantCells(t, tb.row(t, "NAME", "ip0"), "TYPE", "ClusterIP", "CLUSTER-IP", jsonpath(t, s, "{.spec.clusterIP}", "svc", "ip0"), "EXTERNAL-IP", "<none>", "PORT(S)", "80/TCP")

		// A chosen address: in range and free is granted...
		mustEqual(t, "create with clusterIP", s.MustKubectlIn("apiVersion: v1\nkind: Service\nmetadata: {name: fixed}\nspec:\n  clusterIP: 10.43.200.200\n  ports: [{port: 80}]\n", "create", "-f", "-"), "service/fixed created")
		mustEqual(t, "fixed ip", jsonpath(t, s, "{.spec.clusterIP}", "svc", "fixed"), "10.43.200.200")
		// ...taken is refused...
		out := kubectlFail(t, s, "apiVersion: v1\nkind: Service\nmetadata: {name: taken}\nspec:\n  clusterIP: 10.43.200.200\n  ports: [{port: 80}]\n", "create", "-f", "-")
		mustEqual(t, "taken ip", out, `The Service "taken" is invalid: spec.clusterIPs: Invalid value: []string{"10.43.200.200"}: failed to allocate IP 10.43.200.200: provided IP is already allocated`)
		out = kubectlFail(t, s, "apiVersion: v1\nkind: Service\nmetadata: {name: taken}\nspec:\n  clusterIP: 10.43.0.1\n  ports: [{port: 80}]\n", "create", "-f", "-")
		mustEqual(t, "kubernetes ip", out, `The Service "taken" is invalid: spec.clusterIPs: Invalid value: []string{"10.43.0.1"}: failed to allocate IP 10.43.0.1: provided IP is already allocated`)
		// ...and out of range is refused.
		out = kubectlFail(t, s, "apiVersion: v1\nkind: Service\nmetadata: {name: taken}\nspec:\n  clusterIP: 10.99.0.1\n  ports: [{port: 80}]\n", "create", "-f", "-")
		mustEqual(t, "out of range ip", out, `The Service "taken" is invalid: spec.clusterIPs: Invalid value: []string{"10.99.0.1"}: failed to allocate IP 10.99.0.1: the provided IP (10.99.0.1) is not in the valid range. The range of valid IPs is 10.43.0.0/16`)
		notFound(t, s, "", "svc", "taken")
		// Deleting frees the address at once.
		mustEqual(t, "delete", s.MustKubectl("delete", "svc", "fixed"), `service "fixed" deleted`)
		mustEqual(t, "reuse ip", s.MustKubectlIn("apiVersion: v1\nkind: Service\nmetadata: {name: taken}\nspec:\n  clusterIP: 10.43.200.200\n  ports: [{port: 80}]\n", "create", "-f", "-"), "service/taken created")

		// Headless: no address.
		mustEqual(t, "headless", s.MustKubectl("create", "service", "clusterip", "headless", "--clusterip=None"), "service/headless created")
		tb = parseTable(t, s.MustKubectl("get", "svc", "headless"))
		wantCells(t, tb.row(t, "NAME", "headless"), "TYPE", "ClusterIP", "CLUSTER-IP", "None", "PORT(S)", "<none>")
		// The address is immutable.
		out = kubectlFail(t, s, "", "patch", "svc", "ip0", "--type", "merge", "-p", `{"spec":{"clusterIP":"10.43.201.1","clusterIPs":["10.43.201.1"]}}`)
		mustContain(t, out, `The Service "ip0" is invalid: `, `spec.clusterIPs[0]: Invalid value: []string{"10.43.201.1"}: may not change once set`)
	})

	t.Run("node ports", func(t *testing.T) {
		s := on(t, srv)
		seen := map[int]string{}
		for i := 0; i < 4; i++ {
			name := fmt.Sprintf("np%d", i)
			mustEqual(t, "create", s.MustKubectl("create", "service", "nodeport", name, "--tcp=80:8080"), "service/"+name+" created")
			port, err := strconv.Atoi(jsonpath(t, s, "{.spec.ports[0].nodePort}", "svc", name))
			if err != nil || port < 30000 || port > 32767 {
				t.Errorf("%s: nodePort %d (%v) not in 30000-32767", name, port, err)
			}
			if other, dup := seen[port]; dup {
				t.Errorf("%s got nodePort %d, already %s's", name, port, other)
			}
			seen[port] = name
			ip := jsonpath(t, s, "{.spec.clusterIP}", "svc", name)
			if p := net.ParseIP(ip); p == nil || !serviceNet.Contains(p) {
				t.Errorf("%s: NodePort service clusterIP %q not in 10.43.0.0/16", name, ip)
			}
			tb := parseTable(t, s.MustKubectl("get", "svc", name))
			wantCells(t, tb.row(t, "NAME", name), "TYPE", "NodePort", "CLUSTER-IP", ip, "PORT(S)", fmt.Sprintf("80:%d/TCP", port))
		}

		mustEqual(t, "fixed", s.MustKubectl("create", "service", "nodeport", "fixed", "--tcp=80:8080", "--node-port=30080"), "service/fixed created")
		mustHaveLines(t, s.MustKubectl("describe", "svc", "fixed"), "Port: 80-8080 80/TCP", "TargetPort: 8080/TCP", "NodePort: 80-8080 30080/TCP", "Endpoints: <none>", "Session Affinity: None", "External Traffic Policy: Cluster")
		out := kubectlFail(t, s, "", "create", "service", "nodeport", "clash", "--tcp=80:8080", "--node-port=30080")
		mustEqual(t, "clash (create service)", out, `error: failed to create NodePort service: Service "clash" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated`)
		clash := "apiVersion: v1\nkind: Service\nmetadata: {name: clash}\nspec:\n  type: NodePort\n  ports: [{port: 80, nodePort: 30080}]\n"
		out = kubectlFail(t, s, clash, "create", "-f", "-")
		mustEqual(t, "clash (create -f)", out, `The Service "clash" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated`)
		notFound(t, s, "", "svc", "clash")
		out = kubectlFail(t, s, "apiVersion: v1\nkind: Service\nmetadata: {name: clash}\nspec:\n  type: NodePort\n  ports: [{port: 80, nodePort: 40000}]\n", "create", "-f", "-")
		mustEqual(t, "out of range", out, `The Service "clash" is invalid: spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid range. The range of valid ports is 30000-32767`)
		// A ClusterIP service can't ask for a node port.
		out = kubectlFail(t, s, "apiVersion: v1\nkind: Service\nmetadata: {name: clash}\nspec:\n  ports: [{port: 80, nodePort: 30081}]\n", "create", "-f", "-")
		mustEqual(t, "nodePort on ClusterIP", out, `The Service "clash" is invalid: spec.ports[0].nodePort: Forbidden: may not be used when `+"`type`"+` is 'ClusterIP'`)

		// Deleting frees the port: the same port can be taken again.
		mustEqual(t, "delete", s.MustKubectl("delete", "svc", "fixed"), `service "fixed" deleted`)
		mustEqual(t, "reuse", s.MustKubectlIn(clash, "create", "-f", "-"), "service/clash created")
		mustEqual(t, "reused port", jsonpath(t, s, "{.spec.ports[0].nodePort}", "svc", "clash"), "30080")

		// Changing the type to ClusterIP releases the port as well.
		mustEqual(t, "to ClusterIP", s.MustKubectl("patch", "svc", "clash", "--type", "merge", "-p", `{"spec":{"type":"ClusterIP","ports":[{"port":80,"nodePort":null}]}}`), "service/clash patched")
		mustEqual(t, "no nodePort", jsonpath(t, s, "{.spec.type} {.spec.ports[0].nodePort}", "svc", "clash"), "ClusterIP ")
		mustEqual(t, "reuse after type change", s.MustKubectl("create", "service", "nodeport", "again", "--tcp=80:8080", "--node-port=30080"), "service/again created")

		// Every service, by type, in one listing.
		tb := parseTable(t, s.MustKubectl("get", "svc", "-o", "wide", "--sort-by", ".metadata.name"))
		tb.wantHeader(t, "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR")
		wantCells(t, tb.row(t, "NAME", "again"), "TYPE", "NodePort", "PORT(S)", "80:30080/TCP", "SELECTOR", "app=again")
	})

	t.Run("LoadBalancer", func(t *testing.T) {
		s := on(t, srv)
		mustEqual(t, "create", s.MustKubectl("create", "service", "loadbalancer", "lb", "--tcp=443:8443"), "service/lb created")
		tb := parseTable(t, s.MustKubectl("get", "svc", "lb"))
		row := tb.row(t, "NAME", "lb")
		port := jsonpath(t, s, "{.spec.ports[0].nodePort}", "svc", "lb")
		wantCells(t, row, "TYPE", "LoadBalancer", "EXTERNAL-IP", "<pending>", "PORT(S)", "443:"+port+"/TCP")
	})
}
