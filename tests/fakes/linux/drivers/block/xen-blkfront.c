// SPDX-License-Identifier: GPL-2.0-only
#include <linux/module.h>
#include <xen/xenbus.h>

/* The virtual disks of a Xen guest (xvd*): registers with the frontend bus, no more. */
static int xlblk_init(void)
{
	return xenbus_register_frontend("vbd");
}
module_init(xlblk_init);

MODULE_DESCRIPTION("Xen virtual block device frontend (kxen fake tree)");
MODULE_LICENSE("GPL");
MODULE_ALIAS("xen:vbd");
