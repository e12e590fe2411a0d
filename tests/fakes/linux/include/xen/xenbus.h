/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _XEN_XENBUS_H
#define _XEN_XENBUS_H

/* Exported by the frontend bus (xenbus_probe_frontend): the drivers register with it. */
int xenbus_register_frontend(const char *devicetype);

#endif
