/* SPDX-License-Identifier: GPL-2.0-only */
#ifndef _LINUX_EXPORT_H
#define _LINUX_EXPORT_H

/*
 * EXPORT_SYMBOL(sym) makes sym usable by modules. It leaves two traces:
 *  - the name in __ksymtab_strings, where depmod reads what a module exports;
 *  - an entry __ksymtab_<sym> in a section ___ksymtab[_gpl]+<sym>, whose symbol
 *    System.map lists for vmlinux (depmod -F) and whose section name tells
 *    modpost the export type.
 */
#define __EXPORT_SYMBOL(sym, sec)						\
	static const char __kstrtab_##sym[]					\
	__attribute__((used, section("__ksymtab_strings"), aligned(1))) = #sym;	\
	static const void *const __ksymtab_##sym				\
	__attribute__((used, section("___ksymtab" sec "+" #sym))) = &sym

#define EXPORT_SYMBOL(sym) __EXPORT_SYMBOL(sym, "")
#define EXPORT_SYMBOL_GPL(sym) __EXPORT_SYMBOL(sym, "_gpl")

#endif
