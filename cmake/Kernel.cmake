# Helpers to build kernel images (ELF + bootable ISO) and to register kernel
# tests that boot them in QEMU.

find_program(GRUB_MKRESCUE grub-mkrescue REQUIRED)
find_program(GRUB_FILE grub-file REQUIRED)
find_program(QEMU_SYSTEM_X86_64 qemu-system-x86_64 REQUIRED)
find_program(XORRISO xorriso REQUIRED)

# Flags every kernel object is compiled with: freestanding, no red zone (the
# CPU pushes interrupt frames on the kernel stack), the kernel code model for
# a higher-half image, no SSE/MMX (no FPU state is saved on interrupts), and
# frame pointers for backtraces.
set(KHEAP_KERNEL_C_FLAGS
  ${KHEAP_KERNEL_TARGET_FLAGS}
  -ffreestanding -fno-stack-protector -fno-stack-check -fno-pic -fno-pie
  -mno-red-zone -mcmodel=kernel -mno-mmx -mno-sse -mno-sse2
  -fno-omit-frame-pointer -fno-asynchronous-unwind-tables
  -fmacro-prefix-map=${PROJECT_SOURCE_DIR}/=
  -O2 -g -Wall -Wextra -Werror)

set(KHEAP_KERNEL_LINKER_SCRIPT ${PROJECT_SOURCE_DIR}/boot/kernel.ld)

# Applies the kernel compile flags and include paths to target.
function(kheap_kernel_flags target)
  target_compile_options(${target} PRIVATE ${KHEAP_KERNEL_C_FLAGS})
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR}/src)
  set_target_properties(${target} PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
endfunction()

# kheap_kernel_image(<name> SOURCES <src>... [INCLUDES <dir>...]
#                    [DEFINITIONS <def>...] [CMDLINE <string>])
# Builds <name>.elf from the kernel core plus SOURCES, and the bootable
# hybrid (BIOS + UEFI) ISO <name>.iso; the target <name>-iso builds both.
function(kheap_kernel_image name)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "CMDLINE" "SOURCES;INCLUDES;DEFINITIONS")
  add_executable(${name} $<TARGET_OBJECTS:kcore> ${ARG_SOURCES})
  set_target_properties(${name} PROPERTIES OUTPUT_NAME ${name}.elf LINK_DEPENDS ${KHEAP_KERNEL_LINKER_SCRIPT})
  kheap_kernel_flags(${name})
  target_include_directories(${name} PRIVATE ${ARG_INCLUDES})
  target_compile_definitions(${name} PRIVATE ${ARG_DEFINITIONS})
  target_link_options(${name} PRIVATE ${KHEAP_KERNEL_LINK_FLAGS}
    -nostdlib -static -Wl,-T,${KHEAP_KERNEL_LINKER_SCRIPT}
    -Wl,-z,max-page-size=0x1000 -Wl,-z,noexecstack -Wl,--fatal-warnings -Wl,--build-id=none -Wl,-Map,${name}.map)

  set(KHEAP_IMAGE_NAME ${name})
  set(KHEAP_CMDLINE "${ARG_CMDLINE}")
  set(cfg ${CMAKE_CURRENT_BINARY_DIR}/${name}.grub.cfg)
  configure_file(${PROJECT_SOURCE_DIR}/iso/grub.cfg.in ${cfg} @ONLY)

  set(iso ${CMAKE_CURRENT_BINARY_DIR}/${name}.iso)
  add_custom_command(
    OUTPUT ${iso}
    COMMAND ${CMAKE_COMMAND}
      -DELF=$<TARGET_FILE:${name}> -DGRUB_CFG=${cfg} -DISO=${iso}
      -DSTAGING=${CMAKE_CURRENT_BINARY_DIR}/${name}.isodir
      -DGRUB_MKRESCUE=${GRUB_MKRESCUE} -DGRUB_FILE=${GRUB_FILE} -DOBJCOPY=${CMAKE_OBJCOPY}
      -P ${PROJECT_SOURCE_DIR}/cmake/mkiso.cmake
    DEPENDS ${name} ${cfg} ${PROJECT_SOURCE_DIR}/cmake/mkiso.cmake
    COMMENT "Building bootable ISO ${name}.iso"
    VERBATIM)
  add_custom_target(${name}-iso ALL DEPENDS ${iso})
endfunction()

# The QEMU settings shared by `run`, `debug` and every kernel test.
set(KHEAP_QEMU_ARGS
  -DQEMU=${QEMU_SYSTEM_X86_64} -DMEMORY=${QEMU_MEMORY} -DFIRMWARE=${QEMU_FIRMWARE}
  -DCPU=${QEMU_CPU} -DOVMF_CODE=${OVMF_CODE} -DOVMF_VARS=${OVMF_VARS})

# kheap_kernel_test(<image> [EXPECT_FAIL <test>...])
# Registers CTest test kernel.<image>: boots <image>.iso in QEMU through
# cmake/ktest-runner.cmake, which checks the KTAP results and the exit code.
# EXPECT_FAIL names tests that must report "not ok" (harness self-tests).
function(kheap_kernel_test image)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "" "EXPECT_FAIL")
  string(REPLACE ";" "," expect_fail "${ARG_EXPECT_FAIL}")
  add_test(NAME kernel.${image}
    COMMAND ${CMAKE_COMMAND} ${KHEAP_QEMU_ARGS}
      -DISO=${CMAKE_CURRENT_BINARY_DIR}/${image}.iso
      -DWORKDIR=${CMAKE_CURRENT_BINARY_DIR}/${image}.run
      -DBOOT_TIMEOUT=${KTEST_BOOT_TIMEOUT}
      -DEXPECT_FAIL=${expect_fail}
      -P ${PROJECT_SOURCE_DIR}/cmake/ktest-runner.cmake)
  set_tests_properties(kernel.${image} PROPERTIES LABELS kernel TIMEOUT 900)
endfunction()
