// SPDX-License-Identifier: GPL-2.0-only
#include <linux/module.h>
#include <linux/printk.h>

/* Serves disks to other domains (dom0 only): never in kernel-xen. */
static int xen_blkif_init(void)
{
	pr_info("xen-blkback: ready\n");
	return 0;
}
module_init(xen_blkif_init);

MODULE_DESCRIPTION("Xen block-device backend (kxen fake tree)");
MODULE_LICENSE("GPL");
MODULE_ALIAS("xen-backend:vbd");
