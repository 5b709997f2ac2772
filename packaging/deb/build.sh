#!/bin/sh
# build.sh BUILD_DIR DIST_DIR — the .deb from a DESTDIR install of BUILD_DIR, which must be
# configured with CMAKE_INSTALL_PREFIX=/usr (`make deb` does all of this).
#
# Depends: from dpkg-shlibdeps (dpkg-dev) when available, else the Debian 12 names.
# Owner root:root without fakeroot (dpkg-deb --root-owner-group).
set -eu
build=${1:?usage: build.sh BUILD_DIR DIST_DIR}
dist=${2:?usage: build.sh BUILD_DIR DIST_DIR}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
mkdir -p "$dist"
dist=$(cd "$dist" && pwd)
build=$(cd "$build" && pwd)

prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
[ "$prefix" = "/usr" ] || { echo "build.sh: $build has prefix $prefix, want /usr" >&2; exit 1; }
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt")
[ -n "$version" ] || version=$(sed -n 's/^#define MC_VERSION "\(.*\)"/\1/p' "$build/gen/version.h")
debversion="${version}-1"
arch=$(dpkg --print-architecture)

work=$(mktemp -d "${TMPDIR:-/tmp}/metricast-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
umask 022
DESTDIR="$root" cmake --install "$build" >/dev/null
rm -f "$build/install_manifest.txt" # that manifest names the staging tree, not the system

# Debian layout: stripped binaries and library, compressed man pages and docs
for b in "$root"/usr/sbin/* "$root"/usr/bin/*; do
  strip --strip-unneeded --remove-section=.comment --remove-section=.note "$b"
done
libdir=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:PATH=//p' "$build/CMakeCache.txt")
[ -n "$libdir" ] || libdir=lib
for l in "$root/usr/$libdir"/libmetricast.so.*.*.*; do
  strip --strip-unneeded --remove-section=.comment --remove-section=.note "$l"
done
strip --strip-debug "$root/usr/$libdir/libmetricast.a"
gzip -9n "$root"/usr/share/man/man8/*.8 "$root"/usr/share/man/man1/*.1
find "$root/usr/share/doc/metricast" -type f -name '*.md' -size +4k -exec gzip -9n {} +
test -f "$root/etc/metricast/metricastd.conf"
test -f "$root/lib/systemd/system/metricastd.service"
test -x "$root/usr/bin/metricast"
test -f "$root/usr/include/metricast.h"
test -f "$root/usr/$libdir/pkgconfig/metricast.pc"

depends=""
if command -v dpkg-shlibdeps >/dev/null 2>&1; then
  mkdir -p "$work/src/debian"
  printf 'Source: metricast\n\nPackage: metricast\nArchitecture: any\n' \
    >"$work/src/debian/control"
  # the binaries link libmetricast statically; the shared library's own needs count too
  depends=$(cd "$work/src" && dpkg-shlibdeps -O "$root"/usr/sbin/metricastd "$root"/usr/bin/metricast \
            "$root/usr/$libdir"/libmetricast.so.*.*.* 2>/dev/null \
            | sed -n 's/^shlibs:Depends=//p')
fi
if [ -z "$depends" ]; then
  echo "build.sh: dpkg-shlibdeps unavailable, using Debian 12 library names" >&2
  depends="libc6 (>= 2.34), libuv1 (>= 1.44), libjansson4 (>= 2.14), libinih1 (>= 55), libwslay1 (>= 1.1), libssl3 (>= 3.0.0), libsqlite3-0 (>= 3.38)"
fi

mkdir -p "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$debversion/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
    -e "s/@DEPENDS@/$depends/" "$here/control.in" >"$root/DEBIAN/control"
echo /etc/metricast/metricastd.conf >"$root/DEBIAN/conffiles"
# the package ships a shared library in a linker directory: refresh ld.so.cache
echo "activate-noawait ldconfig" >"$root/DEBIAN/triggers"
for s in postinst prerm postrm; do install -m 0755 "$here/$s" "$root/DEBIAN/$s"; done
(cd "$root" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\0' \
   | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums" \
  "$root/DEBIAN/triggers"

out="$dist/metricast_${debversion}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$out" >/dev/null
echo "$out"
