package image

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ArchiveImage is one image to write with WriteArchive, under Names.
type ArchiveImage struct {
	Image v1.Image
	Names []string
}

// WriteArchive writes images as one tar that is both an OCI image layout
// (oci-layout, index.json with one entry per name carrying the full reference in
// org.opencontainers.image.ref.name and io.containerd.image.name, blobs/sha256/...)
// and a `docker save` tarball (manifest.json with RepoTags, Config and Layers
// pointing at the same blobs), the layout `docker save` writes since Docker 25.
// So `peapod image load`, `docker load`, `podman load` and `ctr import` all accept
// it. The output depends only on the images and names: entries are in a fixed
// order with fixed times and owners, so equal input gives equal bytes.
func WriteArchive(w io.Writer, images ...ArchiveImage) error {
	tw := tar.NewWriter(w)
	aw := archiveWriter{tw: tw, written: map[v1.Hash]bool{}}
	if err := aw.file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: archiveTime()}); err != nil {
			return err
		}
	}
	index := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}}
	docker := []dockerManifest{}
	for _, ai := range images {
		refs, err := parseNames(ai.Names)
		if err != nil {
			return err
		}
		m, err := ai.Image.Manifest()
		if err != nil {
			return err
		}
		layers, err := ai.Image.Layers()
		if err != nil {
			return err
		}
		dm := dockerManifest{Config: blobName(m.Config.Digest), Layers: []string{}}
		for i, l := range layers {
			if err := aw.layer(m.Layers[i], l); err != nil {
				return err
			}
			dm.Layers = append(dm.Layers, blobName(m.Layers[i].Digest))
		}
		cfg, err := ai.Image.RawConfigFile()
		if err != nil {
			return err
		}
		if err := aw.blob(m.Config.Digest, cfg); err != nil {
			return err
		}
		raw, err := ai.Image.RawManifest()
		if err != nil {
			return err
		}
		digest, err := ai.Image.Digest()
		if err != nil {
			return err
		}
		if err := aw.blob(digest, raw); err != nil {
			return err
		}
		mt, err := ai.Image.MediaType()
		if err != nil {
			return err
		}
		for _, r := range refs {
			index.Manifests = append(index.Manifests, v1.Descriptor{
				MediaType: mt, Digest: digest, Size: int64(len(raw)),
				Annotations: map[string]string{annotationImageName: r.String(), annotationRefName: r.String()},
			})
			dm.RepoTags = append(dm.RepoTags, r.Familiar())
		}
		docker = append(docker, dm)
	}
	idx, err := json.Marshal(index)
	if err != nil {
		return err
	}
	if err := aw.file("index.json", idx); err != nil {
		return err
	}
	man, err := json.Marshal(docker)
	if err != nil {
		return err
	}
	if err := aw.file("manifest.json", man); err != nil {
		return err
	}
	return tw.Close()
}

// archiveTime is the time of every archive entry.
func archiveTime() time.Time { return time.Unix(0, 0).UTC() }

func blobName(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

type archiveWriter struct {
	tw      *tar.Writer
	written map[v1.Hash]bool
}

func (a *archiveWriter) header(name string, size int64) error {
	return a.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: archiveTime()})
}

func (a *archiveWriter) file(name string, data []byte) error {
	if err := a.header(name, int64(len(data))); err != nil {
		return err
	}
	_, err := a.tw.Write(data)
	return err
}

func (a *archiveWriter) blob(h v1.Hash, data []byte) error {
	if a.written[h] {
		return nil
	}
	a.written[h] = true
	return a.file(blobName(h), data)
}

func (a *archiveWriter) layer(d v1.Descriptor, l v1.Layer) error {
	if a.written[d.Digest] {
		return nil
	}
	a.written[d.Digest] = true
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := a.header(blobName(d.Digest), d.Size); err != nil {
		return err
	}
	n, err := io.Copy(a.tw, rc)
	if err != nil {
		return err
	}
	if n != d.Size {
		return fmt.Errorf("layer %s: %d bytes, manifest says %d", d.Digest, n, d.Size)
	}
	return nil
}
