// SPDX-License-Identifier: GPL-2.0-only
#include <generated/compile.h>
#include <generated/utsrelease.h>

/* The first line a kernel prints, and what /proc/version says. */
const char linux_banner[] =
	"Linux version " UTS_RELEASE " (" LINUX_COMPILE_BY "@" LINUX_COMPILE_HOST ") ("
	LINUX_COMPILER ") " UTS_VERSION "\n";
