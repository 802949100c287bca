#!/bin/sh
# Trims an installed app (its production node_modules) to what the images run; used by both
# Dockerfiles and scripts/build-images.sh so that they hold the same files.
#   slim-app.sh APP_DIR controller|node
# assemblyscript (and binaryen, its dependency: 94 MB) only serve `sluice build`/`sluice new`,
# which load them on demand; the images do not author filters. The node image has no use for the
# Kubernetes client either (only `sluice controller` loads it). Source maps, type declarations and
# READMEs are not read at run time.
set -eu
app=$1
nm="$app/node_modules"
rm -rf "$nm/assemblyscript" "$nm/binaryen" "$nm/@types" "$nm/.bin" "$nm/.cache" "$nm/.package-lock.json"
if [ "$2" = node ]; then rm -rf "$nm/@kubernetes"; fi
find "$nm" "$app/dist" -type f \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -iname 'readme*' -o -iname 'changelog*' \) -delete
