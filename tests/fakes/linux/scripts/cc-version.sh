#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
# Print "<compiler> <version number>" for the C compiler "$@" (GCC 12.2.0: "GCC 120200");
# Kconfig records both (CC_IS_GCC, GCC_VERSION).
set -e
version=$(LC_ALL=C "$@" -dumpfullversion 2>/dev/null || LC_ALL=C "$@" -dumpversion)
major=${version%%.*}
rest=${version#"$major"}; rest=${rest#.}
minor=${rest%%.*}
patch=${rest#"$minor"}; patch=${patch#.}
if LC_ALL=C "$@" --version 2>/dev/null | head -n 1 | grep -q clang; then
	name=Clang
else
	name=GCC
fi
echo "$name $((major * 10000 + ${minor:-0} * 100 + ${patch:-0}))"
