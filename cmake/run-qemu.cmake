# cmake -P script behind the `run` and `debug` targets: boots ISO in headless
# QEMU with the kernel's serial output on this terminal. `run` returns 0 when
# the kernel exits with success (33); anything else fails with the reason.
# With DEBUG=ON QEMU starts paused with a gdb stub on :1234.
include(${CMAKE_CURRENT_LIST_DIR}/qemu-command.cmake)

cmake_minimum_required(VERSION 3.25)

set(extra)
if(DEBUG)
  list(APPEND extra -s -S)
  message("QEMU is paused with a gdb stub on localhost:1234. In another terminal:\n"
          "  gdb -ex 'file ${ELF}' -ex 'source ${GDB_SCRIPT}' -ex 'target remote localhost:1234' -ex 'break kernel_entry' -ex 'continue'\n"
          "(kheap stats | walk | check | block ADDR, pt ADDR: docs/boot.md)\n")
endif()
kheap_qemu_command(cmd ${ISO} ${WORKDIR} ${extra})
execute_process(COMMAND ${cmd} RESULT_VARIABLE rc INPUT_FILE /dev/null)
if(rc EQUAL 33)
  return()
elseif(rc EQUAL 35)
  message(FATAL_ERROR "kernel exited with failure (QEMU status 35)")
elseif(rc EQUAL 0)
  message(FATAL_ERROR "QEMU exited with status 0: the kernel triple-faulted (or never reached isa-debug-exit)")
else()
  message(FATAL_ERROR "QEMU failed: ${rc}")
endif()
