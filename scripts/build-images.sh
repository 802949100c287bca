#!/usr/bin/env bash
# Builds the contents of the two images of deploy/images/ without a container daemon or registry:
# a Debian bookworm base from debootstrap (--variant=minbase, against the mirror apt uses), Node
# and the compiled app from this checkout (`npm run build` first), packed as OCI image layouts with
# umoci. Output, per version (package.json), in ${SLUICE_IMAGE_CACHE:-~/.cache/sluice/images}:
#   <version>/controller/rootfs, <version>/node/rootfs   the file trees (chroot-able)
#   <version>/oci                                        OCI layout, tags controller and node
#                                                        (skopeo copy oci:DIR:node docker-archive:...)
#   <version>/sizes.txt                                  sizes and build times
# The debootstrap base is cached (base-bookworm/); the images are rebuilt when this checkout's
# contents changed (a hash of what goes in), so a second run with no change does nothing.
# Needs root (debootstrap, chroot), debootstrap and umoci (apt-get install debootstrap umoci).
set -euo pipefail
self=$(readlink -f "$0")
slim=$(dirname "$self")/../deploy/images/slim-app.sh
cd "$(dirname "$0")/.."

cache=${SLUICE_IMAGE_CACHE:-$HOME/.cache/sluice/images}
version=$(node -p 'require("./package.json").version')
out="$cache/$version"
started=$(date +%s)

[ "$(id -u)" = 0 ] || { echo "build-images: needs root (debootstrap and chroot)" >&2; exit 1; }
for tool in debootstrap umoci; do
  command -v "$tool" >/dev/null || { echo "build-images: $tool is missing: apt-get install debootstrap umoci" >&2; exit 1; }
done
for f in dist/runtime/cli/main.js dist/controller/index.js build/cni/sluice-cni runtime/capture/native/build/Release/sluice_capture.node build/filters/headers.wasm; do
  [ -e "$f" ] || { echo "build-images: $f is missing: run \`npm run build\` (with Go and a C compiler) first" >&2; exit 1; }
done

# The mirror apt uses (deb822 sources first, then sources.list).
mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)\/\?$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
[ -n "$mirror" ] || mirror=$(awk '$1=="deb" && $2 ~ /debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}

# ---- the base: debootstrap minbase + nftables (the node image's), cached --------------------
base="$cache/base-bookworm"
if [ ! -e "$base/.complete" ]; then
  t0=$(date +%s)
  rm -rf "$base" "$base.tmp"
  echo "build-images: debootstrap bookworm from $mirror (first run only)" >&2
  debootstrap --variant=minbase --include=nftables bookworm "$base.tmp" "$mirror" >&2
  # What an image has no use for.
  rm -rf "$base.tmp"/var/lib/apt/lists/* "$base.tmp"/var/cache/apt/* "$base.tmp"/usr/share/doc/* \
         "$base.tmp"/usr/share/man/* "$base.tmp"/usr/share/locale/* "$base.tmp"/usr/share/info/* "$base.tmp"/var/log/*
  echo "$(( $(date +%s) - t0 ))" > "$base.tmp/.debootstrap-seconds"
  touch "$base.tmp/.complete"
  mv "$base.tmp" "$base"
fi

# ---- the app, as the images hold it --------------------------------------------------------
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
app="$work/app"
mkdir -p "$app/dist" "$app/runtime/agent"
cp package.json package-lock.json "$app/"
cp -r bin "$app/"
cp -r dist/runtime dist/controller dist/sdk "$app/dist/"
cp runtime/agent/sluice-distribution.proto "$app/runtime/agent/"
cp -a node_modules "$app/"
# Production dependencies only (offline: prune only deletes).
(cd "$app" && npm prune --omit=dev --no-audit --no-fund --offline >/dev/null 2>&1) || { echo "build-images: npm prune --omit=dev failed" >&2; exit 1; }
rm -f "$app/package-lock.json"
# The node image's extras: the capture addon, the CNI plugin, the example config and its filters.
nodeapp="$work/node-app"
cp -a "$app" "$nodeapp"
mkdir -p "$nodeapp/runtime/capture/native/build/Release" "$nodeapp/build/cni" "$nodeapp/build/filters" "$nodeapp/examples"
cp runtime/capture/native/build/Release/sluice_capture.node "$nodeapp/runtime/capture/native/build/Release/"
cp build/cni/sluice-cni "$nodeapp/build/cni/"
cp build/filters/*.wasm "$nodeapp/build/filters/"
cp -r examples/local "$nodeapp/examples/"
sh deploy/images/slim-app.sh "$app" controller
sh deploy/images/slim-app.sh "$nodeapp" node
nodebin=$(command -v node)

hash=$( (cd "$work" && find . -type f -print0 | sort -z | xargs -0 sha256sum; sha256sum "$nodebin"; sha256sum "$self" "$slim"; cat "$base/.complete") | sha256sum | cut -c1-16)
if [ -e "$out/.complete" ] && [ "$(cat "$out/.complete")" = "$hash" ]; then
  echo "build-images: $out is up to date ($hash)" >&2
  echo "$out"
  exit 0
fi
t1=$(date +%s)
rm -rf "$out" "$out.tmp"
mkdir -p "$out.tmp"

# ---- controller: distroless-style, from the base's files: Node, the libraries it links, ------
# /etc/passwd with the non-root user, the app. No shell, no package manager.
croot="$out.tmp/controller/rootfs"
mkdir -p "$croot"/{etc,tmp,usr/local/bin,app,lib64}
chmod 1777 "$croot/tmp"
cp "$nodebin" "$croot/usr/local/bin/node"
libs=$("$base/lib64/ld-linux-x86-64.so.2" --library-path "$base/lib/x86_64-linux-gnu:$base/usr/lib/x86_64-linux-gnu" --list "$nodebin" | awk '$3 ~ /^\// {print $3}')
for lib in $libs; do
  rel=${lib#"$base"}
  mkdir -p "$croot$(dirname "$rel")"
  cp -L "$lib" "$croot$rel"
done
cp -L "$base/lib64/ld-linux-x86-64.so.2" "$croot/lib64/"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$croot/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$croot/etc/group"
cp "$base/etc/nsswitch.conf" "$croot/etc/"
mkdir -p "$croot/home/nonroot" && chown 65532:65532 "$croot/home/nonroot"
cp -a "$app/." "$croot/app/"

# ---- node: the base (nftables, util-linux's nsenter) + Node + the app ------------------------
nroot="$out.tmp/node/rootfs"
mkdir -p "$nroot"
cp -a "$base/." "$nroot/"
rm -f "$nroot/.complete" "$nroot/.debootstrap-seconds"
cp "$nodebin" "$nroot/usr/local/bin/node"
cp -a "$nodeapp" "$nroot/app"
ln -s /app/bin/sluice.js "$nroot/usr/local/bin/sluice"

# ---- OCI layouts (umoci: one layer per image, from the rootfs) --------------------------------
oci="$out.tmp/oci"
umoci init --layout "$oci"
pack() { # name rootfs entrypoint-json user cmd...
  local name=$1 rootfs=$2 user=$3 entry=$4; shift 4
  umoci new --image "$oci:$name"
  umoci unpack --image "$oci:$name" "$work/bundle-$name" >/dev/null
  cp -a "$rootfs/." "$work/bundle-$name/rootfs/"
  umoci repack --image "$oci:$name" "$work/bundle-$name"
  local args=(--image "$oci:$name" --config.user "$user" --config.workingdir /app --config.entrypoint /usr/local/bin/node --config.entrypoint /app/bin/sluice.js
              --config.env PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin --author sluice --history.comment "scripts/build-images.sh")
  for c in "$@"; do args+=(--config.cmd "$c"); done
  umoci config "${args[@]}"
  rm -rf "$work/bundle-$name"
}
pack controller "$croot" 65532:65532 controller controller
pack node "$nroot" 0:0 node run --controller sluice-controller.sluice-system.svc:15012
umoci gc --layout "$oci"
t2=$(date +%s)

layer() { # compressed size of an image's layers, from its manifest
  local m; m=$(jq -r --arg n "$1" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]==$n) | .digest' "$oci/index.json" | cut -d: -f2)
  jq '[.layers[].size] | add' "$oci/blobs/sha256/$m"
}
{
  echo "version $version ($hash), built $(date -u +%FT%TZ)"
  echo "controller: rootfs $(du -sh "$croot" | cut -f1), compressed layer $(( $(layer controller) / 1048576 )) MiB"
  echo "node:       rootfs $(du -sh "$nroot" | cut -f1), compressed layer $(( $(layer node) / 1048576 )) MiB"
  echo "debootstrap base: $(cat "$base/.debootstrap-seconds") s (cached); images: $(( t2 - t1 )) s; this run: $(( t2 - started )) s"
} > "$out.tmp/sizes.txt"
cat "$out.tmp/sizes.txt" >&2
echo "$hash" > "$out.tmp/.complete"
mv "$out.tmp" "$out"
echo "$out"
