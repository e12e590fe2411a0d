/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The 32-bit entry point, linked first. This kernel is never meant to run: every
 * entry stops the CPU. What matters to kxen is the shape of the image around it.
 */

	.section .head.text, "ax"
	.code32
	.globl startup_32
	.type startup_32, @function
startup_32:
	cli
1:	hlt
	jmp 1b
	.size startup_32, . - startup_32
