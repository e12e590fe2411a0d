"""Kconfig: fragment layers merged per arch and flavour, resolved by the kernel's own
kconfig, modelled with Kconfiglib to check, explain and edit them, and the toolchain
fingerprint that keys what depends on the compiler."""
