// Package volume owns a pod's volumes on a node: it prepares them on the host
// before the pod's containers start, turns a container's volumeMounts into
// bind mounts for the runtime, refreshes configMap, secret, downwardAPI and
// projected contents in place when their sources change, and removes
// everything when the pod goes. It does what the kubelet's in-tree volume
// plugins do, with their code where it is exported (AtomicWriter,
// SetVolumeOwnership, the configMap and secret payload builders, the safe
// subPath helpers, fieldpath and the resource helpers) and their wording.
//
// # Layout
//
// Everything of a pod lies under <PodsDir>/<pod UID>, as in the kubelet's
// root directory:
//
//	volumes/kubernetes.io~empty-dir/<name>     emptyDir (a directory, or a tmpfs for medium Memory)
//	volumes/kubernetes.io~configmap/<name>     configMap (a directory)
//	volumes/kubernetes.io~secret/<name>        secret (a tmpfs)
//	volumes/kubernetes.io~downward-api/<name>  downwardAPI (a tmpfs)
//	volumes/kubernetes.io~projected/<name>     projected (a tmpfs)
//	plugins/kubernetes.io~empty-dir/<name>/ready   an emptyDir was set up (survives restarts)
//	volume-subpaths/<volume>/<container>/<index>   subPath bind mounts (see Mounts)
//
// hostPath volumes have no directory here: their path on the host is mounted.
//
// # Flow
//
// Setup is called before the pod's sandbox is made and again on every sync of
// the pod (the agent decides how often; about once a minute keeps configMaps,
// secrets and tokens as fresh as the kubelet does). For each volume:
//
//   - emptyDir: the directory (mode 0777) is made, or a tmpfs mounted on it
//     for medium Memory (noswap when the kernel has it, as the kubelet; the
//     same for the tmpfs of the other kinds) with size = the smallest positive of the node's
//     allocatable memory, the pod's memory limit (when every container has
//     one) and sizeLimit, as the kubelet computes it. With a pod fsGroup the
//     directory gets that group, setgid and g+rwx (SetVolumeOwnership). A
//     ready marker under plugins/ makes later calls (even after a restart) do
//     nothing, except remount an empty tmpfs if it is gone.
//   - hostPath: the type check of the kubelet (DirectoryOrCreate makes 0755
//     directories, FileOrCreate 0644 files; the other types are checked),
//     once per pod and process.
//   - configMap, secret, downwardAPI, projected: the whole content (the
//     payload) is computed first, from the Source and the pod; an error there
//     (a configMap not found and not optional, a missing key, a token request
//     refused) leaves the disk untouched. Then the directory (and its tmpfs)
//     is made if missing and AtomicWriter writes the payload: files go to a
//     new timestamped directory, ..data_tmp is pointed at it and renamed over
//     ..data, the user-visible names are symlinks through ..data. A payload
//     equal to what is on disk changes nothing. With fsGroup, the files get
//     the group and g+r as the kubelet's plugins do. A volume that was made
//     by this call and fails to be written is removed again (unmounted), so
//     a failure never leaves a half-written volume; a volume that was already
//     there keeps its previous content.
//   - serviceAccountToken sources (the kube-api-access-xxxxx volume the
//     ServiceAccount admission plugin adds to every pod) are requested
//     through Source.CreateToken, bound to the pod, and cached per pod;
//     a token is renewed when it is older than 80% of its lifetime or 24
//     hours (as the kubelet's token manager, without its random jitter);
//     when renewal fails the old token is kept until it expires.
//
// Errors are per volume: Setup joins one *VolumeError per failing volume
// (errors.Join), whose text is the kubelet's FailedMount event message
// (`MountVolume.SetUp failed for volume "cfg" : configmap "x" not found`) and
// which wraps the cause, so apierrors.IsNotFound works on it.
//
// Mounts maps volumeMounts to runtime.Mounts: the volume's host path (with
// subPath or subPathExpr expanded from the container's environment), read-only
// when asked or when the volume is a configMap, secret, downwardAPI or
// projected volume (always read-only, as upstream), and the propagation
// (None: private, HostToContainer: rslave, Bidirectional: rshared). A subPath
// missing in the volume is created (with the volume's mode, refusing symlinks
// out of it), then opened without following symlinks and bind-mounted from
// the opened descriptor under volume-subpaths/, and that mount is what the
// container gets: a container cannot swap a symlink in between and escape
// the volume (the kubelet's subpath package does all of that). A subPath bind
// mount is a snapshot of one file or directory inode: a configMap key mounted
// with subPath does not see updates until the container is started again
// (as upstream). For Bidirectional propagation the agent must make PodsDir a
// shared mount, as the kubelet does with its root directory.
//
// Teardown unmounts every mount under the pod's directory (tmpfs volumes,
// subPath bind mounts, anything a container propagated back), deepest first,
// checks /proc/self/mountinfo that none is left, and only then removes the
// directory: it never deletes through a mount.
//
// The Manager is safe for concurrent use; calls for one pod are serialized.
package volume
