/*
 * Multiboot2 header (Multiboot2 specification, section 3.1). GRUB looks for it
 * in the first 32 KiB of the image, 8-byte aligned. We ask for nothing but the
 * defaults: an i386 protected-mode hand-off with the boot information in EBX.
 */
#define MB2_HEADER_MAGIC    0xe85250d6
#define MB2_ARCH_I386       0
#define MB2_TAG_END         0

    .section .multiboot2, "a"
    .balign 8
mb2_header_start:
    .long MB2_HEADER_MAGIC
    .long MB2_ARCH_I386
    .long mb2_header_end - mb2_header_start
    .long -(MB2_HEADER_MAGIC + MB2_ARCH_I386 + (mb2_header_end - mb2_header_start))

    /* End tag: type 0, flags 0, size 8. */
    .balign 8
    .short MB2_TAG_END
    .short 0
    .long 8
mb2_header_end:

    .section .note.GNU-stack, "", @progbits
