# Toolchain: clang targeting bare-metal x86_64 ELF, linked by ld.lld.
#
# Kernel targets are compiled with --target=x86_64-unknown-none-elf (no host
# headers or libraries) and linked with lld; host-side tests and tools are
# built by the same clang for the host.
set(CMAKE_C_COMPILER clang)
set(CMAKE_ASM_COMPILER clang)
set(KHEAP_KERNEL_TARGET_FLAGS "--target=x86_64-unknown-none-elf")
set(KHEAP_KERNEL_LINK_FLAGS "--target=x86_64-unknown-none-elf;-fuse-ld=lld")
