/*
 * Entry of hc_bare for MIPS on QEMU's Malta board, in kernel mode from
 * QEMU's boot stub, running in kseg0 (unmapped: virtual = physical +
 * 0x80000000): a stack below 8 MiB of RAM, then C. Both byte orders and
 * both ABIs (o32, n64 with 32-bit symbols) share it.
 */
	.set	noreorder
	.section .text.start, "ax", @progbits
	.globl	_start
_start:
	lui	$sp, 0x8080
	jal	gpm_bare_main
	nop
1:	b	1b
	nop
	.section .note.GNU-stack, "", @progbits
