#!/usr/bin/env bash
# tests/cyrus/barrier/mkpatch.sh A B HEADER OUT -- write OUT as HEADER
# followed by `diff -ru A B` in the a/ b/ form `patch -p1` applies (file
# order sorted, no timestamps).  A and B are Cyrus trees: A with the
# series up to the patch, B with the patch's changes.
set -euo pipefail
[ $# -eq 4 ] || { echo "usage: $0 A B HEADER OUT" >&2; exit 2; }
a=$1 b=$2 header=$3 out=$4
{
    cat "$header"
    echo
    ( cd "$(dirname "$a")" && LC_ALL=C diff -ruN --no-dereference \
          "$(basename "$a")" "$(basename "$b")" || [ $? -eq 1 ] ) |
        sed -E "s#^diff -ruN --no-dereference $(basename "$a")/(.*) $(basename "$b")/.*#diff -u a/\1 b/\1#;
                s#^--- $(basename "$a")/([^[:space:]]*).*#--- a/\1#;
                s#^\+\+\+ $(basename "$b")/([^[:space:]]*).*#+++ b/\1#"
} >"$out"
