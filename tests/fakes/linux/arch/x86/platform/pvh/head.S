/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The PVH entry: Xen starts a PVH guest in 32-bit protected mode, without paging,
 * at the physical address the PHYS32_ENTRY note gives. Built when PVH is on (it is
 * selected by XEN_PVH); the note is emitted only with XEN_PVH.
 */
#include <linux/elfnote.h>
#include <asm/layout.h>
#include <xen/interface/elfnote.h>

	.section .head.text, "ax"
	.code32
	.globl pvh_start_xen
	.type pvh_start_xen, @function
pvh_start_xen:
	cli
1:	hlt
	jmp 1b
	.size pvh_start_xen, . - pvh_start_xen

#ifdef CONFIG_XEN_PVH
	elfnote Xen, XEN_ELFNOTE_PHYS32_ENTRY, ASM_PTR (pvh_start_xen - __START_KERNEL_map)
#endif
