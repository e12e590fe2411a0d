/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _LINUX_VERMAGIC_H
#define _LINUX_VERMAGIC_H

#include <generated/utsrelease.h>

/*
 * The "vermagic" every module carries: the kernel release it was built for, then
 * the options that change the module ABI. The loader refuses a module whose
 * vermagic differs from the kernel's.
 */
#ifdef CONFIG_SMP
#define VERMAGIC_SMP "SMP "
#else
#define VERMAGIC_SMP ""
#endif
#ifdef CONFIG_MODULE_UNLOAD
#define VERMAGIC_MODULE_UNLOAD "mod_unload "
#else
#define VERMAGIC_MODULE_UNLOAD ""
#endif

#define VERMAGIC_STRING UTS_RELEASE " " VERMAGIC_SMP VERMAGIC_MODULE_UNLOAD

#endif
