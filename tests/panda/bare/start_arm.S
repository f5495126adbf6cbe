/* Entry of hc_bare for 32-bit ARM (SVC mode, MMU off): a stack, then C. */
	.syntax unified
	.arm
	.section .text.start, "ax", %progbits
	.globl _start
_start:
	ldr	sp, =0x47f00000
	blx	gpm_bare_main
1:	wfi
	b	1b
	.section .note.GNU-stack, "", %progbits
