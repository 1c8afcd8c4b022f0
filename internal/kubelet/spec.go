package kubelet

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	podresource "k8s.io/kubernetes/pkg/api/v1/resource"
	v1qos "k8s.io/kubernetes/pkg/apis/core/v1/helper/qos"
	"k8s.io/kubernetes/pkg/fieldpath"
	"k8s.io/kubernetes/pkg/kubelet/envvars"
	"k8s.io/kubernetes/third_party/forked/golang/expansion"
	"k8s.io/utils/ptr"

	"github.com/peapod-dev/peapod/internal/image"
	"github.com/peapod-dev/peapod/internal/runtime"
)

// containerConfig turns container c of pod into what the runtime runs.
func (k *Kubelet) containerConfig(ctx context.Context, pod *v1.Pod, sb *runtime.SandboxStatus, c *v1.Container, attempt uint32, lower []string, icfg image.ImageConfig) (*runtime.ContainerConfig, error) {
	podIPs := strings.Split(sb.Annotations[annotationIPs], ",")
	envList, err := k.makeEnv(ctx, pod, c, podIPs)
	if err != nil {
		return nil, err
	}
	envMap := map[string]string{}
	for _, e := range envList {
		envMap[e.Name] = e.Value
	}
	mapping := expansion.MappingFuncFor(envMap)
	var args []string
	if len(c.Command) > 0 {
		for _, a := range c.Command {
			args = append(args, expansion.Expand(a, mapping))
		}
		for _, a := range c.Args {
			args = append(args, expansion.Expand(a, mapping))
		}
	} else {
		args = slices.Clone(icfg.Entrypoint)
		if len(c.Args) > 0 {
			for _, a := range c.Args {
				args = append(args, expansion.Expand(a, mapping))
			}
		} else {
			args = append(args, icfg.Cmd...)
		}
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("no command specified")
	}
	// Image env first, the container's after and overriding it.
	env := mergeEnv(icfg.Env, envList)

	sec, err := securityFor(pod, c, lower, icfg.User)
	if err != nil {
		return nil, err
	}
	mounts, err := k.cfg.Volumes.Mounts(pod, c, envMap)
	if err != nil {
		return nil, err
	}
	podDir := filepath.Join(k.cfg.PodsDir, string(pod.UID))
	taken := func(dst string) bool {
		return slices.ContainsFunc(mounts, func(m runtime.Mount) bool { return m.Destination == dst })
	}
	for _, f := range []struct{ src, dst string }{
		{filepath.Join(podDir, "etc-hosts"), "/etc/hosts"},
		{filepath.Join(podDir, "resolv.conf"), "/etc/resolv.conf"},
		{filepath.Join(podDir, "hostname"), "/etc/hostname"},
	} {
		if !taken(f.dst) {
			mounts = append(mounts, runtime.Mount{Source: f.src, Destination: f.dst})
		}
	}
	if p := c.TerminationMessagePath; p != "" && !taken(p) {
		tl := terminationLogPath(k.cfg.PodsDir, pod, c.Name, attempt)
		if err := os.MkdirAll(filepath.Dir(tl), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(tl, nil, 0o666); err != nil {
			return nil, err
		}
		_ = os.Chmod(tl, 0o666)
		mounts = append(mounts, runtime.Mount{Source: tl, Destination: p})
	}

	logDir := filepath.Join(k.cfg.LogsDir, pod.Namespace+"_"+pod.Name+"_"+string(pod.UID), c.Name)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	ann := map[string]string{}
	if icfg.StopSignal != "" {
		if s := parseSignal(icfg.StopSignal); s > 0 {
			ann[annotationStopSignal] = strconv.Itoa(int(s))
		}
	}
	wd := icfg.WorkingDir
	if c.WorkingDir != "" {
		wd = c.WorkingDir
	}
	return &runtime.ContainerConfig{
		Name:    c.Name,
		Attempt: attempt,
		Labels: map[string]string{
			labelPodUID: string(pod.UID), labelPodName: pod.Name, labelPodNamespace: pod.Namespace, labelContainerName: c.Name,
		},
		Annotations: ann,
		Rootfs:      runtime.Rootfs{LowerDirs: lower, ReadOnly: c.SecurityContext != nil && ptr.Deref(c.SecurityContext.ReadOnlyRootFilesystem, false)},
		Args:        args,
		Env:         env,
		WorkingDir:  wd,
		Mounts:      mounts,
		LogPath:     filepath.Join(logDir, strconv.Itoa(int(attempt))+".log"),
		Stdin:       c.Stdin,
		StdinOnce:   c.StdinOnce,
		TTY:         c.TTY,
		Resources:   k.resources(pod, c),
		Security:    sec,
	}, nil
}

func terminationLogPath(podsDir string, pod *v1.Pod, name string, attempt uint32) string {
	return filepath.Join(podsDir, string(pod.UID), "containers", name, strconv.Itoa(int(attempt))+"-termination-log")
}

func mergeEnv(image []string, ours []v1.EnvVar) []string {
	var order []string
	vals := map[string]string{}
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			order = append(order, k)
		}
		vals[k] = v
	}
	for _, e := range image {
		k, v, _ := strings.Cut(e, "=")
		set(k, v)
	}
	for _, e := range ours {
		set(e.Name, e.Value)
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vals[k])
	}
	return out
}

// makeEnv resolves a container's environment as upstream's kubelet does:
// service variables, then envFrom, then env with $(VAR) expansion.
func (k *Kubelet) makeEnv(ctx context.Context, pod *v1.Pod, c *v1.Container, podIPs []string) ([]v1.EnvVar, error) {
	var result []v1.EnvVar
	tmp := map[string]string{}
	var order []string
	put := func(name, val string) {
		if _, ok := tmp[name]; !ok {
			order = append(order, name)
		}
		tmp[name] = val
	}
	for _, e := range k.serviceEnv(pod) {
		put(e.Name, e.Value)
	}
	for _, from := range c.EnvFrom {
		var data map[string]string
		switch {
		case from.ConfigMapRef != nil:
			cm, err := k.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, from.ConfigMapRef.Name, metav1.GetOptions{})
			if err != nil {
				if ptr.Deref(from.ConfigMapRef.Optional, false) {
					continue
				}
				return nil, fmt.Errorf("configmap %q not found", from.ConfigMapRef.Name)
			}
			data = cm.Data
		case from.SecretRef != nil:
			s, err := k.client.CoreV1().Secrets(pod.Namespace).Get(ctx, from.SecretRef.Name, metav1.GetOptions{})
			if err != nil {
				if ptr.Deref(from.SecretRef.Optional, false) {
					continue
				}
				return nil, fmt.Errorf("secret %q not found", from.SecretRef.Name)
			}
			data = map[string]string{}
			for key, v := range s.Data {
				data[key] = string(v)
			}
		}
		keys := make([]string, 0, len(data))
		for key := range data {
			keys = append(keys, key)
		}
		slices.Sort(keys)
		for _, key := range keys {
			name := from.Prefix + key
			if errs := validation.IsEnvVarName(name); len(errs) != 0 {
				continue
			}
			put(name, data[key])
		}
	}
	mapping := expansion.MappingFuncFor(tmp)
	for _, e := range c.Env {
		val := e.Value
		if e.ValueFrom == nil {
			val = expansion.Expand(val, mapping)
		} else {
			var err error
			if val, err = k.envValueFrom(ctx, pod, c, e.ValueFrom, podIPs); err != nil {
				return nil, err
			}
		}
		put(e.Name, val)
	}
	for _, n := range order {
		result = append(result, v1.EnvVar{Name: n, Value: tmp[n]})
	}
	return result, nil
}

func (k *Kubelet) envValueFrom(ctx context.Context, pod *v1.Pod, c *v1.Container, from *v1.EnvVarSource, podIPs []string) (string, error) {
	switch {
	case from.FieldRef != nil:
		switch from.FieldRef.FieldPath {
		case "spec.nodeName":
			return pod.Spec.NodeName, nil
		case "spec.serviceAccountName":
			return pod.Spec.ServiceAccountName, nil
		case "status.hostIP":
			if len(k.cfg.NodeIPs) > 0 {
				return k.cfg.NodeIPs[0].String(), nil
			}
			return "", nil
		case "status.hostIPs":
			var s []string
			for _, ip := range k.cfg.NodeIPs {
				s = append(s, ip.String())
			}
			return strings.Join(s, ","), nil
		case "status.podIP":
			return podIPs[0], nil
		case "status.podIPs":
			return strings.Join(podIPs, ","), nil
		}
		return fieldpath.ExtractFieldPathAsString(pod, from.FieldRef.FieldPath)
	case from.ResourceFieldRef != nil:
		return podresource.ExtractContainerResourceValue(from.ResourceFieldRef, k.withNodeDefaults(c))
	case from.ConfigMapKeyRef != nil:
		ref := from.ConfigMapKeyRef
		cm, err := k.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			if ptr.Deref(ref.Optional, false) {
				return "", nil
			}
			return "", fmt.Errorf("configmap %q not found", ref.Name)
		}
		v, ok := cm.Data[ref.Key]
		if !ok && !ptr.Deref(ref.Optional, false) {
			return "", fmt.Errorf("couldn't find key %s in ConfigMap %s/%s", ref.Key, pod.Namespace, ref.Name)
		}
		return v, nil
	case from.SecretKeyRef != nil:
		ref := from.SecretKeyRef
		s, err := k.client.CoreV1().Secrets(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			if ptr.Deref(ref.Optional, false) {
				return "", nil
			}
			return "", fmt.Errorf("secret %q not found", ref.Name)
		}
		v, ok := s.Data[ref.Key]
		if !ok && !ptr.Deref(ref.Optional, false) {
			return "", fmt.Errorf("couldn't find key %s in Secret %s/%s", ref.Key, pod.Namespace, ref.Name)
		}
		return string(v), nil
	}
	return "", nil
}

// withNodeDefaults gives c's unset limits the node's allocatable, as
// upstream does for resourceFieldRef.
func (k *Kubelet) withNodeDefaults(c *v1.Container) *v1.Container {
	c = c.DeepCopy()
	st := k.nodeStatus(nil)
	if c.Resources.Limits == nil {
		c.Resources.Limits = v1.ResourceList{}
	}
	for _, r := range []v1.ResourceName{v1.ResourceCPU, v1.ResourceMemory, v1.ResourceEphemeralStorage} {
		if _, ok := c.Resources.Limits[r]; !ok {
			if q, ok := st.Allocatable[r]; ok {
				c.Resources.Limits[r] = q
			}
		}
	}
	return c
}

// serviceEnv is the docker-links-style variables of the services visible to
// the pod (its namespace's when enableServiceLinks, and always the API's).
func (k *Kubelet) serviceEnv(pod *v1.Pod) []v1.EnvVar {
	if k.svcLister == nil {
		return nil
	}
	all, err := k.svcLister.List(labels.Everything())
	if err != nil {
		return nil
	}
	links := ptr.Deref(pod.Spec.EnableServiceLinks, true)
	seen := map[string]*v1.Service{}
	for _, s := range all {
		if s.Spec.ClusterIP == "" || s.Spec.ClusterIP == v1.ClusterIPNone {
			continue
		}
		if s.Namespace == metav1.NamespaceDefault && s.Name == "kubernetes" {
			if _, ok := seen[s.Name]; !ok || pod.Namespace != s.Namespace {
				seen[s.Name] = s
			}
			continue
		}
		if links && s.Namespace == pod.Namespace {
			seen[s.Name] = s
		}
	}
	var svcs []*v1.Service
	for _, s := range seen {
		svcs = append(svcs, s)
	}
	slices.SortFunc(svcs, func(a, b *v1.Service) int { return strings.Compare(a.Name, b.Name) })
	return envvars.FromServices(svcs)
}

// resources maps requests and limits to cgroup settings as upstream does.
func (k *Kubelet) resources(pod *v1.Pod, c *v1.Container) runtime.Resources {
	var r runtime.Resources
	shares := uint64(2)
	if q, ok := c.Resources.Requests[v1.ResourceCPU]; ok {
		shares = max(uint64(q.MilliValue())*1024/1000, 2)
	} else if q, ok := c.Resources.Limits[v1.ResourceCPU]; ok {
		shares = max(uint64(q.MilliValue())*1024/1000, 2)
	}
	r.CPUShares = shares
	if q, ok := c.Resources.Limits[v1.ResourceCPU]; ok {
		r.CPUPeriod = 100000
		r.CPUQuota = max(q.MilliValue()*100000/1000, 1000)
	}
	if q, ok := c.Resources.Limits[v1.ResourceMemory]; ok {
		r.MemoryLimit = q.Value()
	}
	var adj int
	switch v1qos.GetPodQOS(pod) {
	case v1.PodQOSGuaranteed:
		adj = -997
	case v1.PodQOSBestEffort:
		adj = 1000
	default:
		memCap := k.memory
		req := c.Resources.Requests.Memory().Value()
		adj = 1000
		if memCap > 0 {
			adj = 1000 - int(1000*req/memCap)
		}
		adj = min(max(adj, 2), 999)
	}
	r.OOMScoreAdj = &adj
	return r
}

// seccompDir is where Localhost seccomp profiles are looked up, as upstream's
// kubelet does under its root directory.
const seccompDir = "/var/lib/kubelet/seccomp"

// securityFor resolves the container's user and privileges.
func securityFor(pod *v1.Pod, c *v1.Container, lower []string, imageUser string) (runtime.SecurityContext, error) {
	var sec runtime.SecurityContext
	psc := pod.Spec.SecurityContext
	if psc == nil {
		psc = &v1.PodSecurityContext{}
	}
	csc := c.SecurityContext
	if csc == nil {
		csc = &v1.SecurityContext{}
	}
	runAsUser := csc.RunAsUser
	if runAsUser == nil {
		runAsUser = psc.RunAsUser
	}
	runAsGroup := csc.RunAsGroup
	if runAsGroup == nil {
		runAsGroup = psc.RunAsGroup
	}
	runAsNonRoot := csc.RunAsNonRoot
	if runAsNonRoot == nil {
		runAsNonRoot = psc.RunAsNonRoot
	}
	userName, groupName, _ := strings.Cut(imageUser, ":")
	switch {
	case runAsUser != nil:
		sec.UID = uint32(*runAsUser)
		if u, ok := lookupPasswd(lower, strconv.FormatInt(*runAsUser, 10)); ok {
			sec.GID = u.gid
		}
	case userName != "":
		u, ok := lookupPasswd(lower, userName)
		switch {
		case ok:
			sec.UID, sec.GID = u.uid, u.gid
		default:
			n, err := strconv.ParseUint(userName, 10, 32)
			if err != nil {
				if ptr.Deref(runAsNonRoot, false) {
					return sec, fmt.Errorf("container has runAsNonRoot and image has non-numeric user (%s), cannot verify user is non-root (pod: %q, container: %s)", userName, pod.Namespace+"/"+pod.Name, c.Name)
				}
				return sec, fmt.Errorf("unable to find user %s: no matching entries in passwd file", userName)
			}
			sec.UID = uint32(n)
		}
		if groupName != "" {
			if g, ok := lookupGroup(lower, groupName); ok {
				sec.GID = g
			} else if n, err := strconv.ParseUint(groupName, 10, 32); err == nil {
				sec.GID = uint32(n)
			} else {
				return sec, fmt.Errorf("unable to find group %s: no matching entries in group file", groupName)
			}
		}
	}
	if runAsGroup != nil {
		sec.GID = uint32(*runAsGroup)
	}
	if ptr.Deref(runAsNonRoot, false) && sec.UID == 0 {
		return sec, fmt.Errorf("container has runAsNonRoot and image will run as root (pod: %q, container: %s)", pod.Namespace+"/"+pod.Name, c.Name)
	}
	for _, g := range psc.SupplementalGroups {
		sec.AdditionalGIDs = append(sec.AdditionalGIDs, uint32(g))
	}
	if psc.FSGroup != nil {
		sec.AdditionalGIDs = append(sec.AdditionalGIDs, uint32(*psc.FSGroup))
	}
	sec.Privileged = ptr.Deref(csc.Privileged, false)
	if csc.Capabilities != nil {
		for _, c := range csc.Capabilities.Add {
			sec.CapAdd = append(sec.CapAdd, string(c))
		}
		for _, c := range csc.Capabilities.Drop {
			sec.CapDrop = append(sec.CapDrop, string(c))
		}
	}
	sec.NoNewPrivileges = csc.AllowPrivilegeEscalation != nil && !*csc.AllowPrivilegeEscalation
	sp := csc.SeccompProfile
	if sp == nil {
		sp = psc.SeccompProfile
	}
	if sp != nil {
		switch sp.Type {
		case v1.SeccompProfileTypeRuntimeDefault:
			sec.Seccomp.Type = runtime.SeccompRuntimeDefault
		case v1.SeccompProfileTypeLocalhost:
			sec.Seccomp.Type = runtime.SeccompLocalhost
			sec.Seccomp.LocalhostProfile = filepath.Join(seccompDir, ptr.Deref(sp.LocalhostProfile, ""))
		default:
			sec.Seccomp.Type = runtime.SeccompUnconfined
		}
	}
	sec.UnmaskedProc = csc.ProcMount != nil && *csc.ProcMount == v1.UnmaskedProcMount
	return sec, nil
}

type passwdEntry struct{ uid, gid uint32 }

// lookupPasswd finds a user by name or uid in the image's /etc/passwd (the
// topmost layer that has the file).
func lookupPasswd(lower []string, user string) (passwdEntry, bool) {
	for _, f := range readImageFile(lower, "etc/passwd") {
		if len(f) < 4 || (f[0] != user && f[2] != user) {
			continue
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 == nil && err2 == nil {
			return passwdEntry{uint32(uid), uint32(gid)}, true
		}
	}
	return passwdEntry{}, false
}

func lookupGroup(lower []string, group string) (uint32, bool) {
	for _, f := range readImageFile(lower, "etc/group") {
		if len(f) < 3 || f[0] != group {
			continue
		}
		if gid, err := strconv.ParseUint(f[2], 10, 32); err == nil {
			return uint32(gid), true
		}
	}
	return 0, false
}

func readImageFile(lower []string, rel string) [][]string {
	for _, d := range lower {
		b, err := os.ReadFile(filepath.Join(d, rel))
		if err != nil {
			continue
		}
		var out [][]string
		s := bufio.NewScanner(bytes.NewReader(b))
		for s.Scan() {
			out = append(out, strings.Split(s.Text(), ":"))
		}
		return out
	}
	return nil
}

// writePodFiles writes the pod's /etc/hosts, /etc/resolv.conf and
// /etc/hostname.
func (k *Kubelet) writePodFiles(pod *v1.Pod, ips []string) error {
	dir := filepath.Join(k.cfg.PodsDir, string(pod.UID))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	hostname := podHostname(pod)
	if err := writeFile(filepath.Join(dir, "hostname"), hostname+"\n"); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "etc-hosts"), hostsFile(pod, ips, k.cfg.ClusterDomain)); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, "resolv.conf"), k.resolvConf(pod))
}

func writeFile(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func hostsFile(pod *v1.Pod, ips []string, domain string) string {
	var b strings.Builder
	if pod.Spec.HostNetwork {
		b.WriteString("# Kubernetes-managed hosts file (host network).\n")
		host, _ := os.ReadFile("/etc/hosts")
		b.Write(host)
	} else {
		b.WriteString("# Kubernetes-managed hosts file.\n")
		b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
		hostname := podHostname(pod)
		for _, ip := range ips {
			if ip == "" {
				continue
			}
			if pod.Spec.Subdomain != "" {
				fmt.Fprintf(&b, "%s\t%s.%s.%s.svc.%s\t%s\n", ip, hostname, pod.Spec.Subdomain, pod.Namespace, domain, hostname)
			} else {
				fmt.Fprintf(&b, "%s\t%s\n", ip, hostname)
			}
		}
	}
	if len(pod.Spec.HostAliases) > 0 {
		b.WriteString("\n# Entries added by HostAliases.\n")
		for _, a := range pod.Spec.HostAliases {
			fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
		}
	}
	return b.String()
}

func (k *Kubelet) resolvConf(pod *v1.Pod) string {
	hostConf, _ := os.ReadFile("/etc/resolv.conf")
	var hostNS, hostSearch, hostOpts []string
	for _, line := range strings.Split(string(hostConf), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			hostNS = append(hostNS, f[1])
		case "search":
			hostSearch = f[1:]
		case "options":
			hostOpts = append(hostOpts, f[1:]...)
		}
	}
	var ns, search, opts []string
	policy := pod.Spec.DNSPolicy
	if policy == v1.DNSClusterFirst && pod.Spec.HostNetwork {
		policy = v1.DNSDefault
	}
	if (policy == v1.DNSClusterFirst || policy == v1.DNSClusterFirstWithHostNet) && k.cfg.ClusterDNS == nil {
		policy = v1.DNSDefault
	}
	switch policy {
	case v1.DNSClusterFirst, v1.DNSClusterFirstWithHostNet:
		d := k.cfg.ClusterDomain
		ns = []string{k.cfg.ClusterDNS.String()}
		search = append([]string{pod.Namespace + ".svc." + d, "svc." + d, d}, hostSearch...)
		opts = []string{"ndots:5"}
	case v1.DNSNone:
	default:
		ns, search, opts = hostNS, hostSearch, hostOpts
	}
	if dc := pod.Spec.DNSConfig; dc != nil {
		ns = append(ns, dc.Nameservers...)
		search = append(search, dc.Searches...)
		for _, o := range dc.Options {
			s := o.Name
			if o.Value != nil {
				s += ":" + *o.Value
			}
			opts = slices.DeleteFunc(opts, func(x string) bool { n, _, _ := strings.Cut(x, ":"); return n == o.Name })
			opts = append(opts, s)
		}
	}
	var b strings.Builder
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	for _, n := range ns {
		fmt.Fprintf(&b, "nameserver %s\n", n)
	}
	if len(opts) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(opts, " "))
	}
	return b.String()
}

// parseSignal reads an image's STOPSIGNAL ("SIGTERM", "TERM" or "15").
func parseSignal(s string) unix.Signal {
	if n, err := strconv.Atoi(s); err == nil {
		return unix.Signal(n)
	}
	s = strings.ToUpper(s)
	if !strings.HasPrefix(s, "SIG") {
		s = "SIG" + s
	}
	return unix.SignalNum(s)
}
