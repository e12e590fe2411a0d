#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# builtin.sh MODULES_BUILTIN MODULES_BUILTIN_MODINFO OBJECT...: the drivers built into
# vmlinux, as modules_install ships them: each object with a .modinfo section (only
# drivers have one) is listed as kernel/<path>.ko, and its .modinfo strings appended.
set -e
list=$1 modinfo=$2
shift 2
: > "$list.tmp"
: > "$modinfo.tmp"
for object in "$@"; do
	if ${READELF:-readelf} -SW "$object" | grep -q '\] \.modinfo '; then
		echo "kernel/${object%.o}.ko" >> "$list.tmp"
		${OBJCOPY:-objcopy} -O binary -j .modinfo "$object" "$modinfo.part"
		cat "$modinfo.part" >> "$modinfo.tmp"
		rm -f "$modinfo.part"
	fi
done
for file in "$list" "$modinfo"; do
	if cmp -s "$file.tmp" "$file"; then rm -f "$file.tmp"; else mv -f "$file.tmp" "$file"; fi
done
