# Toolchain: the host's gcc, used freestanding for the kernel.
#
# x86_64 Debian's gcc already emits x86_64 ELF, so the kernel needs no cross
# compiler, only freestanding flags (cmake/Kernel.cmake adds those to kernel
# targets). The same compiler builds the host-side tests and tools, so one
# configure builds everything.
set(CMAKE_C_COMPILER gcc)
set(CMAKE_ASM_COMPILER gcc)
set(KHEAP_KERNEL_TARGET_FLAGS "")
set(KHEAP_KERNEL_LINK_FLAGS "-no-pie")
