// SPDX-License-Identifier: GPL-2.0-only
/*
 * Linked into every module (as <module>.mod.o, built with that module's
 * KBUILD_MODNAME): what modpost's generated .mod.c gives a Linux module.
 */
#include <linux/module.h>
#include <linux/vermagic.h>

MODULE_INFO(vermagic, VERMAGIC_STRING);
MODULE_INFO(name, KBUILD_MODNAME);
MODULE_INFO(intree, "Y");
