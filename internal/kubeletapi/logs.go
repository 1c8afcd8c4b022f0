package kubeletapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/util/flushwriter"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-client/pkg/logs"
	"k8s.io/kubernetes/pkg/apis/core/v1/validation"

	"github.com/peapod-dev/peapod/internal/runtime"
)

// containerLogs serves GET /containerLogs/{podNamespace}/{podID}/{containerName}
// as upstream kubelet's getContainerLogs and GetKubeletContainerLogs do.
func (s *Server) containerLogs(w http.ResponseWriter, r *http.Request) {
	namespace, pod, container := r.PathValue("podNamespace"), r.PathValue("podID"), r.PathValue("containerName")
	switch {
	case pod == "":
		writeError(w, http.StatusBadRequest, `{"message": "Missing podID."}`)
		return
	case container == "":
		writeError(w, http.StatusBadRequest, `{"message": "Missing container name."}`)
		return
	case namespace == "":
		writeError(w, http.StatusBadRequest, `{"message": "Missing podNamespace."}`)
		return
	}

	query := r.URL.Query()
	// backwards compatibility for the "tail" query parameter
	if tail := query.Get("tail"); tail != "" {
		query["tailLines"] = []string{tail}
		if tail == "all" {
			delete(query, "tailLines")
		}
	}
	opts := &v1.PodLogOptions{}
	if err := s.params.DecodeParameters(query, v1.SchemeGroupVersion, opts); err != nil {
		writeError(w, http.StatusBadRequest, `{"message": "Unable to decode query."}`)
		return
	}
	opts.TypeMeta = metav1.TypeMeta{}
	if errs := validation.ValidatePodLogOptions(opts); len(errs) > 0 {
		writeError(w, http.StatusUnprocessableEntity, `{"message": "Invalid request."}`)
		return
	}

	ref, err := s.cfg.Pods.Container(namespace, pod, "", container, opts.Previous)
	if err != nil {
		code, msg := logsError(err, pod, container, opts.Previous)
		s.log.Debug("logs: no container", "namespace", namespace, "pod", pod, "container", container, "err", err)
		writeError(w, code, msg)
		return
	}
	ctx := r.Context()
	status, err := s.cfg.Runtime.ContainerStatus(ctx, ref.ID)
	if err != nil {
		s.log.Debug("logs: container status", "id", ref.ID, "err", err)
		writeError(w, http.StatusBadRequest, fmt.Sprintf("unable to retrieve container logs for %s", ref.ID))
		return
	}
	// Errors ReadLogs would report for a missing file, checked while a
	// proper status can still be sent.
	if _, err := filepath.EvalSymlinks(status.LogPath); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("failed to try resolving symlinks in path %q: %v", status.LogPath, err))
		return
	}

	fw := flushwriter.Wrap(w)
	var stdout, stderr io.Writer
	stream := v1.LogStreamAll
	if opts.Stream != nil {
		stream = *opts.Stream
	}
	switch stream {
	case v1.LogStreamStdout:
		stdout = fw
	case v1.LogStreamStderr:
		stderr = fw
	default:
		stdout, stderr = fw, fw
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	// A zero-byte write sends the headers before ReadLogs may block waiting
	// for output (upstream does the same).
	if _, err := fw.Write([]byte{}); err != nil {
		return
	}
	logger := logr.FromSlogHandler(s.log.Handler())
	err = logs.ReadLogs(ctx, &logger, status.LogPath, ref.ID, logs.NewLogOptions(opts, time.Now()), statusShim{rt: s.cfg.Runtime}, stdout, stderr)
	if err != nil && ctx.Err() == nil {
		// The status went out with the first write; the stream just ends.
		s.log.Warn("logs: reading failed", "id", ref.ID, "path", status.LogPath, "err", err)
	}
}

// statusShim is the part of a CRI runtime service ReadLogs uses: following
// a log asks ContainerStatus whether the container still runs. The other
// methods are not implemented (ReadLogs does not call them).
type statusShim struct {
	internalapi.RuntimeService
	rt Runtime
}

func (s statusShim) ContainerStatus(ctx context.Context, id string, _ bool) (*runtimeapi.ContainerStatusResponse, error) {
	st, err := s.rt.ContainerStatus(ctx, id)
	if errors.Is(err, runtime.ErrNotFound) {
		// Removed while being followed: the log is complete.
		return &runtimeapi.ContainerStatusResponse{Status: &runtimeapi.ContainerStatus{Id: id, State: runtimeapi.ContainerState_CONTAINER_EXITED}}, nil
	}
	if err != nil {
		return nil, err
	}
	state := runtimeapi.ContainerState_CONTAINER_UNKNOWN
	switch st.State {
	case runtime.ContainerCreated:
		state = runtimeapi.ContainerState_CONTAINER_CREATED
	case runtime.ContainerRunning:
		state = runtimeapi.ContainerState_CONTAINER_RUNNING
	case runtime.ContainerExited:
		state = runtimeapi.ContainerState_CONTAINER_EXITED
	}
	return &runtimeapi.ContainerStatusResponse{Status: &runtimeapi.ContainerStatus{Id: id, State: state, LogPath: st.LogPath}}, nil
}
