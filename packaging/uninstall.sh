#!/bin/sh
# uninstall.sh MANIFEST — removes exactly the files the last `make install` wrote: CMake's
# install_manifest.txt lists them without DESTDIR, so the DESTDIR of that install is added
# back (from the environment, else from MANIFEST.destdir, which `make install` records).
# Then the metricast-owned directories left empty go too (a path with "metricast" in it,
# judged without DESTDIR, deepest first); shared directories (sbin, man8, lib/pkgconfig,
# include, systemd/system) never do.
set -eu
manifest=${1:?usage: [DESTDIR=dir] uninstall.sh build/install_manifest.txt}
if [ ! -f "$manifest" ]; then
  echo "uninstall: $manifest not found: nothing was installed from this build" >&2
  exit 1
fi
if [ -z "${DESTDIR:-}" ] && [ -f "$manifest.destdir" ]; then
  DESTDIR=$(cat "$manifest.destdir")
fi
destdir=${DESTDIR:-}
dirs=""
while IFS= read -r f || [ -n "$f" ]; do
  [ -n "$f" ] || continue
  d=$(dirname -- "$f")
  case "$d" in *metricast*) dirs="$dirs
$destdir$d" ;; esac
  f="$destdir$f"
  if [ -e "$f" ] || [ -L "$f" ]; then
    rm -f -- "$f"
    echo "removed $f"
  fi
done < "$manifest"
printf '%s\n' "$dirs" | sort -ru | while IFS= read -r d; do
  if [ -n "$d" ] && rmdir -- "$d" 2>/dev/null; then echo "removed $d/"; fi
done
rm -f -- "$manifest" "$manifest.destdir"
