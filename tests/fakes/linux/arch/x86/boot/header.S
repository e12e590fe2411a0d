/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The bzImage: a boot sector holding the start of the x86 boot protocol header,
 * the real-mode setup (SETUP_SECTS sectors), then the protected-mode part: here a
 * stub where Linux has its decompressor, followed by the compressed kernel
 * (piggy.bin: vmlinux.bin compressed, then its size as 4 little-endian bytes).
 * Loaders that unpack the kernel themselves, like Xen's domain builder, find it
 * through payload_offset (from the protected-mode part) and payload_length.
 *
 * Offsets and field sizes follow the boot protocol (Linux's
 * Documentation/x86/boot.rst). Everything is in one section, so the assembler
 * computes every offset, and .org fails the build if a field moved.
 */
#include <asm/layout.h>
#include <generated/compile.h>
#include <generated/utsrelease.h>

#define SETUP_SECTS	4
#define BOOT_PROTOCOL	0x020f		/* 2.15, as in Linux 6.1 */
#define LOADED_HIGH	0x01		/* the protected-mode part is loaded at 1 MiB */
#ifdef CONFIG_X86_64
#define XLOADFLAGS	0x0003		/* 64-bit entry; may be loaded above 4 GiB */
#else
#define XLOADFLAGS	0
#endif
#define INIT_SIZE	0x2000000	/* memory from the load address the kernel needs */

	.code16
	.section .bstext, "ax"
bootsect:
	/* started from a disk without a boot loader: stop */
	cli
1:	hlt
	jmp 1b

	.org 0x1f1
setup_sects:		.byte SETUP_SECTS
root_flags:		.word 1
syssize:		.long (payload_end - pm_start + 15) / 16
ram_size:		.word 0
vid_mode:		.word 0xffff
root_dev:		.word 0
boot_flag:		.word 0xaa55

	.org 0x200			/* the setup code: a jump over the header */
	.byte 0xeb, start_of_setup - 1f
1:	.ascii "HdrS"
version:		.word BOOT_PROTOCOL
realmode_swtch:		.long 0
start_sys_seg:		.word 0x1000
kernel_version:		.word version_string - bootsect - 0x200
type_of_loader:		.byte 0
loadflags:		.byte LOADED_HIGH
setup_move_size:	.word 0x8000
code32_start:		.long 0x100000
ramdisk_image:		.long 0
ramdisk_size:		.long 0
bootsect_kludge:	.long 0
heap_end_ptr:		.word 0
ext_loader_ver:		.byte 0
ext_loader_type:	.byte 0
cmd_line_ptr:		.long 0
initrd_addr_max:	.long 0x7fffffff
kernel_alignment:	.long 0x200000
relocatable_kernel:	.byte 1
min_alignment:		.byte 21
xloadflags:		.word XLOADFLAGS
cmdline_size:		.long 2047
hardware_subarch:	.long 0
hardware_subarch_data:	.quad 0
	.org 0x248
payload_offset:		.long payload - pm_start
payload_length:		.long payload_end - payload
setup_data:		.quad 0
pref_address:		.quad LOAD_PHYSICAL_ADDR
init_size:		.long INIT_SIZE
handover_offset:	.long 0
kernel_info_offset:	.long 0

start_of_setup:
	cli
1:	hlt
	jmp 1b

version_string:
	.ascii UTS_RELEASE, " (", LINUX_COMPILE_BY, "@", LINUX_COMPILE_HOST, ") ", UTS_VERSION
	.byte 0

	.org (SETUP_SECTS + 1) * 512	/* the protected-mode part */
pm_start:
	.code32
startup_32:
	cli
1:	hlt
	jmp 1b

	.balign 16
payload:
	.incbin "arch/x86/boot/compressed/piggy.bin"
payload_end:
