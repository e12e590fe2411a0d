/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _LINUX_KCONFIG_H
#define _LINUX_KCONFIG_H

/* Included into every C and assembly file: the CONFIG_ values of this build. */
#include <generated/autoconf.h>

#endif
