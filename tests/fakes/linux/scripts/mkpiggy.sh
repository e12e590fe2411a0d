#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# mkpiggy.sh gzip|bzip2|xz|zstd IN OUT: IN compressed the way Linux compresses its kernel
# image, followed by IN's size as 4 little-endian bytes (where a decompressor reads it).
set -e
method=$1 in=$2 out=$3
case $method in
gzip) gzip -n -9 -c "$in" ;;
bzip2) bzip2 -9 -c "$in" ;;
xz) xz --check=crc32 --x86 --lzma2=dict=1MiB -c "$in" ;;
zstd) zstd -q -19 -c "$in" ;;
*) echo "mkpiggy.sh: no kernel compression '$method'" >&2; exit 1 ;;
esac > "$out.tmp"
size=$(wc -c < "$in")
byte() { printf '\\%03o' $((size >> $1 & 255)); }
printf "$(byte 0)$(byte 8)$(byte 16)$(byte 24)" >> "$out.tmp"
mv -f "$out.tmp" "$out"
