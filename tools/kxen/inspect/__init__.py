"""Checks of what was built: rpmlint, `kxen verify` (metadata, payload, config, Xen ELF
notes) and `kxen boot-test` (the kernel booted as a Xen domU under Xen in QEMU)."""
