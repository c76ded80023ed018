# Included by the cmake -P scripts that boot an ISO. Defines
# kheap_qemu_command(<out-var> <iso> <workdir> [extra args...]) from the
# variables QEMU MEMORY FIRMWARE CPU SMP OVMF_CODE OVMF_VARS.
#
# SMP CPUs (default 1), run by multi-threaded TCG (one host thread per
# virtual CPU, -accel tcg,thread=multi) so that CPUs really run in parallel
# and races can show; docs/measurements.md has the timings.
#
# Headless: no display, COM1 on stdio, no reboot (a triple fault ends QEMU
# with status 0, which never counts as success), and the isa-debug-exit
# device through which the kernel reports 33 (success) or 35 (failure).
# FIRMWARE=uefi boots OVMF on q35: the code flash read-only, and a private
# writable copy of the variable store per run so parallel runs never share it.

function(kheap_qemu_command out iso workdir)
  if(NOT SMP)
    set(SMP 1)
  endif()
  set(cmd ${QEMU}
    -m ${MEMORY} -cpu ${CPU} -smp ${SMP} -accel tcg,thread=multi
    -display none -serial stdio -monitor none -no-reboot -net none
    -device isa-debug-exit,iobase=0xf4,iosize=0x04
    -cdrom ${iso})
  if(FIRMWARE STREQUAL "uefi")
    if(NOT EXISTS "${OVMF_CODE}" OR NOT EXISTS "${OVMF_VARS}")
      message(FATAL_ERROR "QEMU_FIRMWARE=uefi needs OVMF (Debian package ovmf): '${OVMF_CODE}' / '${OVMF_VARS}' not found")
    endif()
    file(MAKE_DIRECTORY ${workdir})
    file(COPY_FILE ${OVMF_VARS} ${workdir}/OVMF_VARS.fd)
    list(APPEND cmd -machine q35
      -drive if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}
      -drive if=pflash,format=raw,unit=1,file=${workdir}/OVMF_VARS.fd)
  elseif(FIRMWARE STREQUAL "bios")
    list(APPEND cmd -boot d)
  else()
    message(FATAL_ERROR "QEMU_FIRMWARE must be bios or uefi, not '${FIRMWARE}'")
  endif()
  list(APPEND cmd ${ARGN})
  set(${out} "${cmd}" PARENT_SCOPE)
endfunction()
