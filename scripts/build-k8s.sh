#!/usr/bin/env bash
# Builds the Kubernetes binaries the tests run (kube-apiserver and kubectl from k8s.io/kubernetes,
# etcd from go.etcd.io/etcd/server/v3) through the Go module proxy, once per machine, into
# ${SLUICE_K8S_CACHE:-~/.cache/sluice/k8s}/<version>/. Prints that directory. Safe to re-run.
set -euo pipefail

K8S_VERSION=${SLUICE_K8S_VERSION:-v1.32.13}
ETCD_VERSION=${SLUICE_ETCD_VERSION:-v3.5.36}
cache=${SLUICE_K8S_CACHE:-$HOME/.cache/sluice/k8s}
out="$cache/$K8S_VERSION-etcd-$ETCD_VERSION"

if [ -x "$out/kube-apiserver" ] && [ -x "$out/kubectl" ] && [ -x "$out/etcd" ]; then
  echo "$out"
  exit 0
fi
command -v go >/dev/null || { echo "build-k8s: go is not on PATH; install Go 1.23+ (the API server is built from source)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out.tmp"
export GOFLAGS=-mod=mod CGO_ENABLED=0

# k8s.io/kubernetes points its staging modules at ./staging/src/...; outside its own tree each must
# be replaced by the published module of the same release (v0.<minor>.<patch>).
staging=v0.${K8S_VERSION#v1.}
(
  cd "$work"
  mkdir k8s etcd
  cd k8s
  go mod init sluice.dev/k8s-build >/dev/null 2>&1
  go mod download -json "k8s.io/kubernetes@$K8S_VERSION" > dl.json
  gomod=$(sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' dl.json)
  {
    echo "require k8s.io/kubernetes $K8S_VERSION"
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}'
  } >> go.mod
  echo "build-k8s: building kube-apiserver and kubectl $K8S_VERSION (first run on this machine only; several minutes)" >&2
  go build -trimpath -ldflags="-s -w" -o "$out.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
  go build -trimpath -ldflags="-s -w" -o "$out.tmp/kubectl" k8s.io/kubernetes/cmd/kubectl
  cd ../etcd
  go mod init sluice.dev/etcd-build >/dev/null 2>&1
  echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION" >> go.mod
  echo "build-k8s: building etcd $ETCD_VERSION" >&2
  go build -trimpath -ldflags="-s -w" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3
)
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
