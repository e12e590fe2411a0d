/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The 64-bit entry point, linked first. This kernel is never meant to run: every
 * entry stops the CPU. What matters to kxen is the shape of the image around it.
 */

	.section .head.text, "ax"
	.code64
	.globl startup_64
	.type startup_64, @function
startup_64:
	cli
1:	hlt
	jmp 1b
	.size startup_64, . - startup_64
