#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# depmod.sh DEPMOD KERNELRELEASE [INSTALL_MOD_PATH]: index the installed modules as
# Linux's modules_install does (depmod -ae -F System.map [-b DIR] RELEASE). Without
# depmod it only warns, as Linux does. Build environments may lack sbin in PATH.
set -e
depmod=$1 release=$2 root=$3
PATH=$PATH:/usr/sbin:/sbin
if ! command -v "$depmod" >/dev/null 2>&1; then
	echo "Warning: modules_install: '$depmod' not found: no modules.dep" >&2
	exit 0
fi
set -- -ae -F System.map
if [ -n "$root" ]; then
	set -- "$@" -b "$root"
fi
exec "$depmod" "$@" "$release"
