"""kxen: build the kernel-xen RPM from upstream Linux (paravirt_ops Xen domU)."""
