/* SPDX-License-Identifier: MIT */
#ifndef __XEN_PUBLIC_ELFNOTE_H__
#define __XEN_PUBLIC_ELFNOTE_H__

/* Types of the "Xen" ELF notes a domain builder reads (Xen's public/elfnote.h). */
#define XEN_ELFNOTE_ENTRY		1	/* PV entry point (virtual address) */
#define XEN_ELFNOTE_HYPERCALL_PAGE	2
#define XEN_ELFNOTE_VIRT_BASE		3
#define XEN_ELFNOTE_PADDR_OFFSET	4
#define XEN_ELFNOTE_XEN_VERSION		5
#define XEN_ELFNOTE_GUEST_OS		6
#define XEN_ELFNOTE_GUEST_VERSION	7
#define XEN_ELFNOTE_LOADER		8
#define XEN_ELFNOTE_PAE_MODE		9
#define XEN_ELFNOTE_FEATURES		10
#define XEN_ELFNOTE_SUSPEND_CANCEL	14
#define XEN_ELFNOTE_PHYS32_ENTRY	18	/* PVH entry point (physical address) */

#endif
