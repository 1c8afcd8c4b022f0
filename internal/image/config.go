package image

import (
	"maps"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ImageConfig is the part of an image's config that shapes its containers. The
// runtime applies it as the kubelet does: a container's command replaces
// Entrypoint (and drops Cmd), its args replace Cmd; Env comes before the
// container's env; WorkingDir and User apply unless the pod spec overrides them.
type ImageConfig struct {
	Entrypoint []string
	Cmd        []string
	// Env holds "NAME=value" entries.
	Env        []string
	WorkingDir string
	// User is "user", "uid", "user:group" or "uid:gid"; names resolve in the
	// image's /etc/passwd and /etc/group.
	User string
	// ExposedPorts are "port/protocol" entries, e.g. "80/tcp", sorted.
	ExposedPorts []string
	// Volumes are the paths the image declares as volumes, sorted.
	Volumes    []string
	StopSignal string
	Labels     map[string]string
}

func configOf(cf *v1.ConfigFile) ImageConfig {
	c := cf.Config
	return ImageConfig{
		Entrypoint:   slices.Clone(c.Entrypoint),
		Cmd:          slices.Clone(c.Cmd),
		Env:          slices.Clone(c.Env),
		WorkingDir:   c.WorkingDir,
		User:         c.User,
		ExposedPorts: slices.Sorted(maps.Keys(c.ExposedPorts)),
		Volumes:      slices.Sorted(maps.Keys(c.Volumes)),
		StopSignal:   c.StopSignal,
		Labels:       maps.Clone(c.Labels),
	}
}
