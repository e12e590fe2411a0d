// SPDX-License-Identifier: GPL-2.0-only
#include <linux/module.h>
#include <xen/xenbus.h>

/* The network interfaces of a Xen guest: registers with the frontend bus, no more. */
static int netif_init(void)
{
	return xenbus_register_frontend("vif");
}
module_init(netif_init);

MODULE_DESCRIPTION("Xen virtual network device frontend (kxen fake tree)");
MODULE_LICENSE("GPL");
MODULE_ALIAS("xen:vif");
