/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _ASM_X86_LAYOUT_H
#define _ASM_X86_LAYOUT_H

/*
 * Where the kernel lives: linked at __START_KERNEL (virtual), loaded at
 * LOAD_PHYSICAL_ADDR; a virtual address minus __START_KERNEL_map is physical.
 * Used by the linker script, the Xen notes and the boot header.
 */
#define PAGE_SIZE		4096
#define LOAD_PHYSICAL_ADDR	0x1000000

#ifdef CONFIG_X86_64
#define __START_KERNEL_map	0xffffffff80000000
#define ASM_PTR			.quad
#else
#define __START_KERNEL_map	0xc0000000
#define ASM_PTR			.long
#endif

#define __START_KERNEL		(__START_KERNEL_map + LOAD_PHYSICAL_ADDR)

#endif
