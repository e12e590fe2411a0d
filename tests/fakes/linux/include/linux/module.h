/* SPDX-License-Identifier: GPL-2.0-only */
#ifndef _LINUX_MODULE_H
#define _LINUX_MODULE_H

#include <linux/export.h>

#define __KXEN_PASTE2(a, b) a##b
#define __KXEN_PASTE(a, b) __KXEN_PASTE2(a, b)
#define __KXEN_UNIQUE(prefix) __KXEN_PASTE(prefix, __COUNTER__)

/*
 * MODULE_INFO(tag, "value") adds "tag=value" to .modinfo, which modinfo(8), depmod
 * (aliases) and the module loader (vermagic) read. Built in, the strings carry the
 * module name ("xen_blkfront.license=GPL"): modules.builtin.modinfo collects them.
 */
#ifdef MODULE
#define __MODULE_INFO_PREFIX
#else
#define __MODULE_INFO_PREFIX KBUILD_MODNAME "."
#endif

#define MODULE_INFO(tag, info)							\
	static const char __KXEN_UNIQUE(__modinfo_)[]				\
	__attribute__((used, section(".modinfo"), aligned(1))) =		\
		__MODULE_INFO_PREFIX #tag "=" info

#define MODULE_LICENSE(_license) MODULE_INFO(license, _license)
#define MODULE_DESCRIPTION(_text) MODULE_INFO(description, _text)
#define MODULE_ALIAS(_alias) MODULE_INFO(alias, _alias)

/* A module's entry point is init_module; built in, it becomes an initcall. */
#ifdef MODULE
#define module_init(fn) int init_module(void) __attribute__((alias(#fn)))
#else
#define module_init(fn)								\
	static int (*const __KXEN_UNIQUE(__initcall_))(void)			\
	__attribute__((used, section(".initcall6.init"))) = fn
#endif

#endif
