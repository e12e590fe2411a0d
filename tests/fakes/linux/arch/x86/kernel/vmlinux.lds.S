/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The layout of vmlinux: code, then the ELF notes (also as a PT_NOTE segment, where
 * Xen's domain builder looks), read-only data with the export tables, then data.
 * Virtual addresses start at __START_KERNEL, load (physical) addresses at
 * LOAD_PHYSICAL_ADDR.
 */
#include <asm/layout.h>

#ifdef CONFIG_X86_64
OUTPUT_FORMAT("elf64-x86-64")
OUTPUT_ARCH(i386:x86-64)
ENTRY(phys_startup_64)
#else
OUTPUT_FORMAT("elf32-i386")
OUTPUT_ARCH(i386)
ENTRY(phys_startup_32)
#endif

PHDRS {
	text PT_LOAD FLAGS(5);
	data PT_LOAD FLAGS(6);
	note PT_NOTE FLAGS(0);
}

SECTIONS
{
	/* .modinfo of built-in drivers goes to modules.builtin.modinfo instead */
	/DISCARD/ : { *(.note.GNU-stack) *(.note.gnu.property) *(.modinfo) *(.eh_frame) }

	. = __START_KERNEL;
	_text = .;
	.text : AT(ADDR(.text) - __START_KERNEL_map) {
		*(.head.text)
		*(.text .text.*)
	} :text = 0xcccccccc
	_etext = .;

	.notes : AT(ADDR(.notes) - __START_KERNEL_map) { *(.note.*) } :text :note

	.rodata : AT(ADDR(.rodata) - __START_KERNEL_map) { *(.rodata .rodata.*) } :text
	__ksymtab : AT(ADDR(__ksymtab) - __START_KERNEL_map) { *(SORT(___ksymtab+*)) } :text
	__ksymtab_gpl : AT(ADDR(__ksymtab_gpl) - __START_KERNEL_map) {
		*(SORT(___ksymtab_gpl+*))
	} :text
	__ksymtab_strings : AT(ADDR(__ksymtab_strings) - __START_KERNEL_map) {
		*(__ksymtab_strings)
	} :text

	. = ALIGN(PAGE_SIZE);
	_sdata = .;
	.data : AT(ADDR(.data) - __START_KERNEL_map) {
		*(.data .data.*)
		__initcall_start = .;
		*(.initcall*.init)
		__initcall_end = .;
	} :data
	.bss : AT(ADDR(.bss) - __START_KERNEL_map) { *(.bss .bss.*) *(COMMON) } :data
	_end = .;
}

#ifdef CONFIG_X86_64
phys_startup_64 = ABSOLUTE(startup_64 - __START_KERNEL_map);
#else
phys_startup_32 = ABSOLUTE(startup_32 - __START_KERNEL_map);
#endif
