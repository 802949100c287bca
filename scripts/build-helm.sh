#!/usr/bin/env bash
# Builds the Helm CLI (helm.sh/helm/v3/cmd/helm) at a pinned v3 release through the Go module proxy,
# once per machine, into ${SLUICE_HELM_CACHE:-~/.cache/sluice/helm}/<version>/helm. Prints that
# directory. Safe to re-run; the chart test (test/deploy/chart.test.ts) runs it when helm is missing.
set -euo pipefail

HELM_VERSION=${SLUICE_HELM_VERSION:-v3.17.3}
cache=${SLUICE_HELM_CACHE:-$HOME/.cache/sluice/helm}
out="$cache/$HELM_VERSION"

if [ -x "$out/helm" ]; then
  echo "$out"
  exit 0
fi
command -v go >/dev/null || { echo "build-helm: go is not on PATH; install Go 1.23+ (helm is built from source)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out.tmp"
export GOFLAGS=-mod=mod CGO_ENABLED=0
(
  cd "$work"
  go mod init sluice.dev/helm-build >/dev/null 2>&1
  echo "require helm.sh/helm/v3 $HELM_VERSION" >> go.mod
  echo "build-helm: building helm $HELM_VERSION (first run on this machine only; a few minutes)" >&2
  # helm reports its version from this variable; without it `helm version` says v3.x-dev.
  go build -trimpath -ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    -o "$out.tmp/helm" helm.sh/helm/v3/cmd/helm
)
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
