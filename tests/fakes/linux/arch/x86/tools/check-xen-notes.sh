#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# check-xen-notes.sh XEN_NOTES VMLINUX: the Xen ELF notes in vmlinux (as the host program
# XEN_NOTES lists them) are those include/config/auto.conf asks for: GUEST_OS, ENTRY and
# FEATURES with XEN_PV, PHYS32_ENTRY with XEN_PVH, none of them otherwise. A guard of
# this fake tree: a kernel must fail kxen verify because of its config, never because
# the fake tree is broken.
set -e
types=$("$1" "$2")
has() { printf '%s\n' "$types" | grep -qx "$1"; }
configured() { grep -q "^CONFIG_$1=y\$" include/config/auto.conf; }
status=0
expect() {  # SYMBOL NOTE_TYPE NAME
	if configured "$1" && ! has "$2"; then
		echo "$0: CONFIG_$1=y but vmlinux has no Xen $3 note" >&2
		status=1
	elif ! configured "$1" && has "$2"; then
		echo "$0: vmlinux has a Xen $3 note without CONFIG_$1" >&2
		status=1
	fi
}
expect XEN_PV 6 GUEST_OS
expect XEN_PV 1 ENTRY
expect XEN_PV 10 FEATURES
expect XEN_PVH 18 PHYS32_ENTRY
exit $status
