package oci

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/peapod-dev/peapod/internal/runtime"
)

// seccompProfile turns a container's seccomp choice into the spec's filter,
// given the spec with its capabilities set: the default and Docker-format
// profiles have rules that apply only with (or without) some capability
// (CAP_SYS_ADMIN allows mount, unshare, ...). nil is no filter.
//
// RuntimeDefault is moby's default profile (github.com/moby/profiles/seccomp,
// the one Docker uses and containerd's contrib/seccomp derives from): a
// deny-by-default allow list whose refusals are EPERM. Localhost profiles
// are read with the same library, so they may be in the OCI runtime-spec
// format or Docker's (archMap, includes/excludes by capability, kernel or
// architecture).
func seccompProfile(p runtime.SeccompProfile, s *specs.Spec) (*specs.LinuxSeccomp, error) {
	switch p.Type {
	case "", runtime.SeccompUnconfined:
		return nil, nil
	case runtime.SeccompRuntimeDefault:
		f, err := seccomp.GetDefaultProfile(s)
		if err != nil {
			return nil, fmt.Errorf("oci: the default seccomp profile: %w", err)
		}
		return f, nil
	case runtime.SeccompLocalhost:
		if !filepath.IsAbs(p.LocalhostProfile) {
			return nil, fmt.Errorf("oci: seccomp profile %q is not an absolute path: %w", p.LocalhostProfile, runtime.ErrInvalid)
		}
		b, err := os.ReadFile(p.LocalhostProfile)
		if err != nil {
			return nil, fmt.Errorf("oci: seccomp profile: %w: %w", err, runtime.ErrInvalid)
		}
		f, err := seccomp.LoadProfile(string(b), s)
		if err != nil {
			return nil, fmt.Errorf("oci: seccomp profile %s: %w: %w", p.LocalhostProfile, err, runtime.ErrInvalid)
		}
		return f, nil
	}
	return nil, fmt.Errorf("oci: seccomp profile type %q (want %s, %s or %s): %w", p.Type,
		runtime.SeccompRuntimeDefault, runtime.SeccompUnconfined, runtime.SeccompLocalhost, runtime.ErrInvalid)
}
