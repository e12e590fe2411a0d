// SPDX-License-Identifier: GPL-2.0-or-later
#include <linux/module.h>
#include <linux/printk.h>

/* hvc0, the console of PV and PVH guests (always built in). */
static int xen_hvc_init(void)
{
	pr_info("hvc0: Xen console\n");
	return 0;
}
module_init(xen_hvc_init);
