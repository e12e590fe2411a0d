// SPDX-License-Identifier: GPL-2.0
/*
 * xen-notes FILE: print the type of every ELF note owned by "Xen" in the SHT_NOTE
 * sections of FILE (a 32- or 64-bit little-endian ELF file), one decimal number a
 * line. A host program: the build runs it to check that vmlinux has the Xen notes
 * its configuration asks for (see check-xen-notes.sh).
 */
#include <elf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned char *image;
static size_t image_size;

static int fail(const char *path, const char *what)
{
	fprintf(stderr, "xen-notes: %s: %s\n", path, what);
	return 1;
}

static int load(const char *path)
{
	FILE *file = fopen(path, "rb");
	long end;

	if (!file || fseek(file, 0, SEEK_END) || (end = ftell(file)) < 0 ||
	    fseek(file, 0, SEEK_SET))
		return -1;
	image_size = (size_t)end;
	image = malloc(image_size ? image_size : 1);
	if (!image || fread(image, 1, image_size, file) != image_size)
		return -1;
	return fclose(file);
}

/* Note records: name size, desc size, type (32-bit words in both ELF classes), then
 * the name and the desc, each padded to 4 bytes. */
static void print_notes(uint64_t offset, uint64_t size)
{
	uint64_t at = offset, end = offset + size;

	while (at + sizeof(Elf32_Nhdr) <= end) {
		Elf32_Nhdr note;
		uint64_t name = at + sizeof(note);

		memcpy(&note, image + at, sizeof(note));
		at = name + ((note.n_namesz + 3ULL) & ~3ULL) + ((note.n_descsz + 3ULL) & ~3ULL);
		if (at > end)
			break;
		if (note.n_namesz == 4 && !memcmp(image + name, "Xen", 4))
			printf("%u\n", note.n_type);
	}
}

int main(int argc, char **argv)
{
	const unsigned char *ident;
	uint64_t shoff, count, entry, i;

	if (argc != 2)
		return fail("usage", "xen-notes FILE");
	if (load(argv[1]))
		return fail(argv[1], "cannot read");
	ident = image;
	if (image_size < sizeof(Elf64_Ehdr) || memcmp(ident, ELFMAG, SELFMAG) ||
	    ident[EI_DATA] != ELFDATA2LSB)
		return fail(argv[1], "not a little-endian ELF file");
	if (ident[EI_CLASS] == ELFCLASS64) {
		const Elf64_Ehdr *header = (const Elf64_Ehdr *)image;

		shoff = header->e_shoff, count = header->e_shnum, entry = sizeof(Elf64_Shdr);
	} else {
		const Elf32_Ehdr *header = (const Elf32_Ehdr *)image;

		shoff = header->e_shoff, count = header->e_shnum, entry = sizeof(Elf32_Shdr);
	}
	if (shoff > image_size || count > (image_size - shoff) / entry)
		return fail(argv[1], "section headers out of the file");
	for (i = 0; i < count; i++) {
		const unsigned char *at = image + shoff + i * entry;
		uint64_t type, offset, size;

		if (ident[EI_CLASS] == ELFCLASS64) {
			const Elf64_Shdr *section = (const Elf64_Shdr *)at;

			type = section->sh_type, offset = section->sh_offset, size = section->sh_size;
		} else {
			const Elf32_Shdr *section = (const Elf32_Shdr *)at;

			type = section->sh_type, offset = section->sh_offset, size = section->sh_size;
		}
		if (type == SHT_NOTE && offset <= image_size && size <= image_size - offset)
			print_notes(offset, size);
	}
	return 0;
}
