/* Entry of hc_bare for AArch64 (EL1, MMU off): a stack, then C. */
	.section .text.start, "ax", %progbits
	.globl _start
_start:
	ldr	x0, =0x47f00000
	mov	sp, x0
	bl	gpm_bare_main
1:	wfi
	b	1b
	.section .note.GNU-stack, "", %progbits
