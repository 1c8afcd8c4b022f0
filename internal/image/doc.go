// Package image is the node's image store: where images come from (an archive
// loaded with `peapod image load`, a registry pull) and how containers get their
// root file systems from them (shared, read-only overlayfs lowerdirs).
//
// # Layout on disk
//
// A Store lives in one directory (the agent's <data-dir>/images), which is itself
// a valid OCI image layout that skopeo or ctr could read:
//
//	oci-layout            {"imageLayoutVersion":"1.0.0"}
//	index.json            OCI image index: one entry per name -> manifest digest,
//	                      with the name in io.containerd.image.name and
//	                      org.opencontainers.image.ref.name, plus the repo digest,
//	                      image ID, size and time stored (dev.peapod.image.*)
//	blobs/sha256/<hex>    manifests, configs and layer blobs as the source served
//	                      them, each verified against its digest before it lands
//	layers/<diffID hex>/  each layer unpacked once, an overlayfs lowerdir
//	holds/<holder>        the manifest a container (holder) uses (see Acquire)
//	tmp/                  work in progress: downloads, unpacking, archive spools
//	index.lock, content.lock, gc-pending
//
// Only single-platform image manifests are stored (an index is resolved to the
// store's platform when pulled or loaded); a reference that named an index keeps
// its digest as the repo digest. Layers are unpacked keyed by diff ID, not chain
// ID: with overlayfs whiteouts (OCI ".wh.NAME" files become 0/0 character devices,
// ".wh..wh..opq" the trusted.overlay.opaque=y xattr) an unpacked layer does not
// depend on the layers below it, so identical layers are shared by every image.
// Rootfs and Acquire return the layers top-most first, the order of overlayfs'
// lowerdir option; a layer given twice is listed once, and a layer whose root is
// opaque (overlayfs ignores the xattr on a layer's root) ends the list. Unpacking happens in tmp/ and is published by a rename after
// the diff ID checked out and syncfs(2) made the files durable, so a directory
// under layers/ is always complete.
//
// # Concurrency and crashes
//
// The store is safe for concurrent use by goroutines and by processes (the agent
// and a `peapod image load` beside it). Every lock is flock(2) on a descriptor
// opened for that operation, so it excludes goroutines as well as processes:
//
//   - index.lock, exclusive, around each read-modify-write of index.json. The new
//     index is written to a temporary file, fsynced and renamed over the old one
//     (then the directory is fsynced): a crash leaves the old or the new index.
//     Readers take no lock.
//   - content.lock, shared, for the whole of every operation that writes content
//     the index does not reference yet or relies on unreferenced content staying
//     (Load, Pull, Import, Rootfs, Acquire); exclusive for garbage collection,
//     which therefore never sees a half-made image.
//
// Remove and Release only drop references (index entries, hold files) and leave
// the marker gc-pending; collection then runs at once if nothing holds
// content.lock, or else when the last operation holding it ends. It deletes
// every blob, layer directory and temporary file that no named image and no
// hold references (layer directories are renamed into tmp/ before they are
// deleted). Everything a crash can leave behind (temporary files, half-unpacked
// layers, blobs of an image whose index entry was never written) is thus
// unreferenced and goes at the next collection; nothing half-written is ever
// reachable from index.json.
//
// # Names
//
// References are normalized as Docker and the kubelet do (ParseReference):
// "busybox" is docker.io/library/busybox:latest; a reference with a tag and a
// digest keeps the digest. Invalid references fail with ErrInvalidReference,
// which the agent reports as InvalidImageName.
//
// # Pulls
//
// Pull uses go-containerregistry's remote package. A RegistriesConfig in the
// format of k3s' registries.yaml sends pulls to mirrors (with repository
// rewrites), gives per-host credentials and TLS settings, and marks hosts as plain
// HTTP; localhost and loopback addresses always use plain HTTP. A pod's
// imagePullSecrets (kubernetes.io/dockerconfigjson) become a Keyring
// (ParseDockerConfigJSON) that Pull consults per endpoint host.
//
// # For the runtime
//
// A container runtime needs RootfsProvider: Acquire(ctx, containerID, image)
// gives the lowerdirs and ImageConfig and keeps them until Release(containerID);
// the runtime mounts overlayfs with lowerdir=strings.Join(dirs, ":") plus its own
// upperdir and workdir. Long lowerdir lists can exceed the mount options' page:
// mount from the layers directory with relative names when that matters.
package image
