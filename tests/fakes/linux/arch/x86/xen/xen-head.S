/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The Xen PV entry and the notes that make vmlinux a PV guest kernel. A PV domain
 * builder refuses an image without GUEST_OS "linux", ENTRY and FEATURES; with
 * XEN_PV off (always on 32-bit) none of them is emitted.
 */
#include <linux/elfnote.h>
#include <asm/layout.h>
#include <xen/interface/elfnote.h>

#ifdef CONFIG_XEN_PV
	.section .head.text, "ax"
	.code64
	.globl startup_xen
	.type startup_xen, @function
startup_xen:
	cli
1:	hlt
	jmp 1b
	.size startup_xen, . - startup_xen

	elfnote Xen, XEN_ELFNOTE_GUEST_OS, .asciz "linux"
	elfnote Xen, XEN_ELFNOTE_GUEST_VERSION, .asciz "2.6"
	elfnote Xen, XEN_ELFNOTE_XEN_VERSION, .asciz "xen-3.0"
	elfnote Xen, XEN_ELFNOTE_VIRT_BASE, ASM_PTR __START_KERNEL_map
	elfnote Xen, XEN_ELFNOTE_PADDR_OFFSET, ASM_PTR 0
	elfnote Xen, XEN_ELFNOTE_ENTRY, ASM_PTR startup_xen
	elfnote Xen, XEN_ELFNOTE_FEATURES, .asciz "!writable_page_tables"
	elfnote Xen, XEN_ELFNOTE_PAE_MODE, .asciz "yes"
	elfnote Xen, XEN_ELFNOTE_LOADER, .asciz "generic"
	elfnote Xen, XEN_ELFNOTE_SUSPEND_CANCEL, .long 1
#endif
