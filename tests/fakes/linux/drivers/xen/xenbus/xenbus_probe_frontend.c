// SPDX-License-Identifier: GPL-2.0-only
#include <linux/module.h>
#include <linux/printk.h>
#include <xen/xenbus.h>

/* The bus the frontend drivers register with; the drivers depend on this module. */
static int registered;

int xenbus_register_frontend(const char *devicetype)
{
	registered++;
	pr_info("xenbus: frontend driver for %s registered\n", devicetype);
	return 0;
}
EXPORT_SYMBOL_GPL(xenbus_register_frontend);

static int xenbus_probe_frontend_init(void)
{
	return 0;
}
module_init(xenbus_probe_frontend_init);

MODULE_DESCRIPTION("Xen frontend xenbus (kxen fake tree)");
MODULE_LICENSE("GPL");
