"""The Xen ELF notes a domain builder reads from a guest kernel (Xen's public/elfnote.h):
what `kxen verify` looks for, and what each guest type needs (`kxen.arches`)."""

XEN_ELFNOTE_ENTRY = 1
XEN_ELFNOTE_HYPERCALL_PAGE = 2
XEN_ELFNOTE_GUEST_OS = 6
XEN_ELFNOTE_FEATURES = 10
XEN_ELFNOTE_PHYS32_ENTRY = 18


NOTE_NAMES = {
    XEN_ELFNOTE_ENTRY: "ENTRY",
    XEN_ELFNOTE_HYPERCALL_PAGE: "HYPERCALL_PAGE",
    XEN_ELFNOTE_GUEST_OS: "GUEST_OS",
    XEN_ELFNOTE_FEATURES: "FEATURES",
    XEN_ELFNOTE_PHYS32_ENTRY: "PHYS32_ENTRY",
}
