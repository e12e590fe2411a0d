/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _LINUX_PRINTK_H
#define _LINUX_PRINTK_H

int _printk(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define pr_info(fmt, ...) _printk("\0016" fmt, ##__VA_ARGS__)

#endif
