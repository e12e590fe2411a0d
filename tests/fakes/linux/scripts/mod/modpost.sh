#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# modpost.sh SYMVERS "BUILTIN_OBJECTS" MODULE_OBJECT...: what modpost does in this tree.
# Writes SYMVERS (Module.symvers) with one line per export of vmlinux (its built-in
# objects) and of each module: crc (0: no MODVERSIONS), symbol, module, export type,
# namespace, tab-separated. Fails when a module uses a symbol nothing exports.
set -e
symvers=$1 builtin=$2
shift 2
# exports OBJECT MODULE: the ___ksymtab[_gpl]+<symbol> sections of an object
exports() {
	${READELF:-readelf} -SW "$1" | sed -n \
		-e "s|^.*\] ___ksymtab_gpl+\([^ ]*\) .*\$|0x00000000	\1	$2	EXPORT_SYMBOL_GPL	|p" \
		-e "s|^.*\] ___ksymtab+\([^ ]*\) .*\$|0x00000000	\1	$2	EXPORT_SYMBOL	|p"
}
{
	for object in $builtin; do
		exports "$object" vmlinux
	done
	for object in "$@"; do
		exports "$object" "${object%.o}"
	done
} > "$symvers.tmp"
status=0
for object in "$@"; do
	for symbol in $(${NM:-nm} -u "$object" | awk '{ print $2 }'); do
		if ! cut -f2 "$symvers.tmp" | grep -qx "$symbol"; then
			echo "ERROR: modpost: \"$symbol\" [${object%.o}.ko] undefined!" >&2
			status=1
		fi
	done
done
if [ $status -ne 0 ]; then
	rm -f "$symvers.tmp"
	exit $status
fi
if cmp -s "$symvers.tmp" "$symvers"; then
	rm -f "$symvers.tmp"
else
	mv -f "$symvers.tmp" "$symvers"
fi
