// Package kubeletapi is the node agent's kubelet-style HTTPS API: the
// endpoints the API server proxies pods/log, pods/exec, pods/attach and
// pods/portforward to, so that kubectl logs, exec, attach, cp and
// port-forward work against peapod's pods.
//
// # Paths
//
// The API server builds the URLs (k8s.io/kubernetes/pkg/registry/core/pod,
// LogLocation, ExecLocation, AttachLocation, PortForwardLocation), so the
// paths and query parameters are upstream kubelet's
// (k8s.io/kubernetes/pkg/kubelet/server/server.go):
//
//	GET       /containerLogs/{namespace}/{pod}/{container}?follow&previous&sinceSeconds&sinceTime&tailLines&timestamps&limitBytes&stream
//	GET|POST  /exec/{namespace}/{pod}[/{uid}]/{container}?command=..&input=1&output=1&error=1&tty=1
//	GET|POST  /attach/{namespace}/{pod}[/{uid}]/{container}?input=1&output=1&error=1&tty=1
//	GET|POST  /portForward/{namespace}/{pod}[/{uid}]
//	GET       /healthz
//
// # Flow
//
// Every request is authenticated by its TLS client certificate (verified
// against Config.TLS.ClientCAs; without one: 401 Unauthorized) and then
// authorized by Config.Authorize (only the API server's kubelet-client
// identity, not the nodes' own certificates signed by the same CA; else 403
// with upstream's wording). The handler then resolves the API's names to
// runtime objects through Pods, answering upstream kubelet's errors (404
// "pod does not exist", 400 `previous terminated container "c" in pod "p" not
// found`, ...) before any protocol upgrade, and hands the request to
// upstream's libraries:
//
//   - logs: k8s.io/cri-client/pkg/logs ReadLogs reads the container's CRI
//     log file (LogPath from the runtime's ContainerStatus) with tail, since,
//     timestamps, limitBytes and follow; following stops once the runtime
//     reports the container not running (a small shim answers ReadLogs'
//     ContainerStatus question from Runtime).
//   - exec and attach: k8s.io/kubelet/pkg/cri/streaming/remotecommand
//     ServeExec and ServeAttach negotiate SPDY (channel.k8s.io v1-v4) or
//     WebSocket (v1-v4) streams and call Runtime.Exec / Runtime.Attach with
//     them; a non-zero exit code goes back as the NonZeroExitCode status
//     that kubectl prints as "command terminated with exit code N".
//     kubectl 1.32 speaks WebSocket v5 to the API server, which translates
//     it to SPDY towards this server (TranslateStreamCloseWebsocketRequests).
//   - port-forward: k8s.io/kubelet/pkg/cri/streaming/portforward
//     ServePortForward; every forwarded connection dials 127.0.0.1:port
//     (then [::1]:port) inside the pod sandbox's network namespace (the
//     socket is created there and stays there) and copies both ways,
//     half-closing towards the pod when the client stops sending. kubectl's
//     WebSocket tunnel is translated to SPDY by the API server
//     (PortForwardWebsockets).
//
// Exec, attach and port-forward hijack the connection; Shutdown cancels the
// base context of every request (ending follows, execs and attaches),
// closes the hijacked connections and waits for the handlers to return.
package kubeletapi
