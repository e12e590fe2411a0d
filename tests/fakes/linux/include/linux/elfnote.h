/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _LINUX_ELFNOTE_H
#define _LINUX_ELFNOTE_H

#ifdef __ASSEMBLY__
/*
 * elfnote OWNER, TYPE, DESC...: one ELF note record (name size, desc size, type, the
 * owner's name, then DESC, each part 4-byte aligned) in section .note.OWNER. The
 * linker script gathers .note.* into the PT_NOTE segment, where a loader finds it.
 */
.macro elfnote owner:req, type:req, desc:vararg
	.pushsection .note.\owner, "a", @note
	.balign 4
	.long 2f - 1f
	.long 4f - 3f
	.long \type
1:	.asciz "\owner"
2:	.balign 4
3:	\desc
4:	.balign 4
	.popsection
.endm
#endif

#endif
