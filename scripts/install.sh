#!/bin/sh
# Install cyrsync under a prefix:
#
#   PREFIX/include/cyrsync.h
#   PREFIX/lib/libcyrsync.a
#   PREFIX/lib/native-static-libs      the system libraries the archive needs
#   PREFIX/lib/pkgconfig/cyrsync.pc    the same, as Libs.private
#   PREFIX/bin/cyrsync                 the admin command
#   PREFIX/share/man/man1              the man pages
#   PREFIX/share/doc/cyrsync           the JSON schema (prose and JSON Schema)
#
# usage: scripts/install.sh [--debug] [--no-build] PREFIX
#
# Builds with cargo first (release profile; --debug for the dev profile)
# unless --no-build. DESTDIR is honoured as in `make install`
# (DESTDIR=/tmp/stage scripts/install.sh /usr stages for a package whose
# files end up under /usr). CARGO and CARGO_TARGET_DIR are honoured.
#
# A script rather than cargo-c: cargo-c is not in this project's toolchain
# and the build must work offline with the cargo that builds the rest
# (Debian builds Rust packages offline); this needs only cargo, sh and
# install(1).
set -eu

profile=release
build=yes
while [ $# -gt 1 ]; do
    case $1 in
        --debug) profile=debug ;;
        --no-build) build=no ;;
        *) break ;;
    esac
    shift
done
if [ $# -ne 1 ] || [ -z "$1" ] || [ "${1#-}" != "$1" ]; then
    echo "usage: $0 [--debug] [--no-build] PREFIX" >&2
    exit 2
fi
prefix=$1
case $prefix in
    /*) ;;
    *) echo "$0: PREFIX must be an absolute path" >&2; exit 2 ;;
esac
dest=${DESTDIR:-}

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
cargo=${CARGO:-cargo}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
case $target_dir in /*) ;; *) target_dir=$repo/$target_dir ;; esac
if [ "$profile" = release ]; then
    flag=--release
else
    flag=
fi

if [ "$build" = yes ]; then
    # The archive, and the system libraries rustc says it needs (cargo
    # replays the note when the build is fresh).
    out=$("$cargo" rustc $flag -p cyrsync --lib --crate-type staticlib \
          -- --print native-static-libs 2>&1) || { printf '%s\n' "$out" >&2; exit 1; }
    native=$(printf '%s\n' "$out" | sed -n 's/.*native-static-libs: //p' | tail -n 1)
    [ -n "$native" ] || { echo "$0: rustc printed no native-static-libs" >&2; exit 1; }
    mkdir -p "$target_dir/$profile"
    printf '%s\n' "$native" >"$target_dir/$profile/native-static-libs"
    "$cargo" build $flag -p cyrsync --bin cyrsync
fi
for f in "$target_dir/$profile/libcyrsync.a" "$target_dir/$profile/cyrsync" \
         "$target_dir/$profile/native-static-libs"; do
    [ -f "$f" ] || { echo "$0: $f is missing (build first)" >&2; exit 1; }
done
native=$(cat "$target_dir/$profile/native-static-libs")
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)

install -d "$dest$prefix/include" "$dest$prefix/lib/pkgconfig" "$dest$prefix/bin"
install -m 644 include/cyrsync.h "$dest$prefix/include/cyrsync.h"
install -m 644 "$target_dir/$profile/libcyrsync.a" "$dest$prefix/lib/libcyrsync.a"
printf '%s\n' "$native" >"$dest$prefix/lib/native-static-libs"
chmod 644 "$dest$prefix/lib/native-static-libs"
install -m 755 "$target_dir/$profile/cyrsync" "$dest$prefix/bin/cyrsync"
cat >"$dest$prefix/lib/pkgconfig/cyrsync.pc" <<PC
prefix=$prefix
exec_prefix=\${prefix}
libdir=\${exec_prefix}/lib
includedir=\${prefix}/include

Name: cyrsync
Description: Rust replacements for Cyrus IMAP's sync log, sync_client lock handling and global write barrier
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -lcyrsync
Libs.private: $native
PC
chmod 644 "$dest$prefix/lib/pkgconfig/cyrsync.pc"
for page in docs/man/*.[1-8]; do
    [ -f "$page" ] || continue
    section=${page##*.}
    install -d "$dest$prefix/share/man/man$section"
    install -m 644 "$page" "$dest$prefix/share/man/man$section/"
done
install -d "$dest$prefix/share/doc/cyrsync"
install -m 644 docs/cyrsync-json.md docs/cyrsync-json.schema.json "$dest$prefix/share/doc/cyrsync/"
echo "installed cyrsync $version under $dest$prefix"
