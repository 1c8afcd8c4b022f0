#!/usr/bin/env bash
# update-openapi.sh: generate internal/apiserver/openapi/zz_generated.openapi.go,
# the OpenAPI definitions peapod's API server is built with, for only the types
# it serves (upstream's k8s.io/kubernetes/pkg/generated/openapi covers every
# Kubernetes type: a larger heap and a slower start for nothing we serve).
#
# Usage: hack/update-openapi.sh [OUTPUT_DIR]
#   OUTPUT_DIR defaults to internal/apiserver/openapi; `make check-generated`
#   passes a temporary directory and diffs the result against the checked-in file.
#
# The generator is k8s.io/kube-openapi's cmd/openapi-gen at the version in go.mod
# (a `tool` directive there), run as upstream's hack/update-codegen.sh
# (codegen::openapi) runs it. It reads the input packages' source through
# go/packages, i.e. from the module cache at the versions go.mod selects.
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
OUTPUT_PKG=github.com/peapod-dev/peapod/internal/apiserver/openapi
OUTPUT_DIR=${1:-internal/apiserver/openapi}
OUTPUT_FILE=zz_generated.openapi.go

# INPUT_PKGS are the Go packages whose types get definitions. Keep the k8s.io/api
# part in step with `groups` in internal/apiserver/apiserver.go: one package per
# served group version (a package covers the types of its subresources too:
# autoscaling/v1 Scale, policy/v1 Eviction, core/v1 Binding, authentication/v1
# TokenRequest, ...). A group version served without its package here makes the
# server fail at startup with "cannot find model definition for ...".
INPUT_PKGS=(
	# groups in internal/apiserver/apiserver.go
	k8s.io/api/core/v1                  # api/v1
	k8s.io/api/apps/v1                  # apps/v1
	k8s.io/api/batch/v1                 # batch/v1
	k8s.io/api/autoscaling/v1           # autoscaling/v1
	k8s.io/api/autoscaling/v2           # autoscaling/v2
	k8s.io/api/discovery/v1             # discovery.k8s.io/v1
	k8s.io/api/coordination/v1          # coordination.k8s.io/v1
	k8s.io/api/events/v1                # events.k8s.io/v1
	k8s.io/api/node/v1                  # node.k8s.io/v1
	k8s.io/api/policy/v1                # policy/v1
	k8s.io/api/authentication/v1        # authentication.k8s.io/v1
	k8s.io/api/authorization/v1         # authorization.k8s.io/v1
	k8s.io/api/scheduling/v1            # scheduling.k8s.io/v1
	# shared types every group uses: ObjectMeta, ListMeta, Status, DeleteOptions,
	# WatchEvent, APIGroupList/APIResourceList (discovery), RawExtension,
	# IntOrString, Quantity, version.Info (/version)
	k8s.io/apimachinery/pkg/apis/meta/v1
	k8s.io/apimachinery/pkg/runtime
	k8s.io/apimachinery/pkg/util/intstr
	k8s.io/apimachinery/pkg/api/resource
	k8s.io/apimachinery/pkg/version
)

# The linter's report of API rule violations goes to a throw-away file: upstream's
# types have known violations (upstream keeps them in api/api-rules/), and with
# the default "-" the generator would fail on them.
report=$(mktemp)
trap 'rm -f "$report"' EXIT

mkdir -p "$OUTPUT_DIR"
rm -f "$OUTPUT_DIR/$OUTPUT_FILE"
"$GO" run k8s.io/kube-openapi/cmd/openapi-gen \
	--output-dir "$OUTPUT_DIR" \
	--output-pkg "$OUTPUT_PKG" \
	--output-file "$OUTPUT_FILE" \
	--report-filename "$report" \
	"${INPUT_PKGS[@]}"
