# cmake -P script: boots ISO paused with a gdb stub on a private unix socket and runs gdb in batch
# mode with cmake/gdb/kheap.py and test/gdb/test_kheap_gdb.py, which stops in the demo, asserts the
# output of every command for the image's BACKEND and MODE (plain, hardened) and detaches; the
# kernel must then finish its boot (QEMU status 33).
include(${CMAKE_CURRENT_LIST_DIR}/../../cmake/qemu-command.cmake)
file(REMOVE_RECURSE ${WORKDIR})
file(MAKE_DIRECTORY ${WORKDIR})
set(sock ${WORKDIR}/gdb.sock)
kheap_qemu_command(qemu ${ISO} ${WORKDIR} -S -gdb unix:${sock},server=on,wait=off)
list(TRANSFORM qemu REPLACE "^stdio$" "file:${WORKDIR}/serial.log")
# Two commands run side by side (a pipeline); gdb waits for the socket, QEMU for gdb.
execute_process(
  COMMAND ${qemu}
  COMMAND ${CMAKE_COMMAND} -E env KHEAP_GDB_SOCKET=${sock} KHEAP_GDB_BACKEND=${BACKEND} KHEAP_GDB_MODE=${MODE}
          KHEAP_GDB_SERIAL=${WORKDIR}/serial.log
          ${GDB} -batch -nx -ex "file ${ELF}" -ex "source ${GDB_SCRIPT}" -ex "source ${TEST_SCRIPT}"
  RESULTS_VARIABLE rcs OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
list(GET rcs 0 qemu_rc)
if(NOT out MATCHES "kheap gdb test: all ok")
  message(FATAL_ERROR "gdb test failed (${rcs}):\n${out}\n${err}")
endif()
if(NOT qemu_rc EQUAL 33)
  file(READ ${WORKDIR}/serial.log serial)
  message(FATAL_ERROR "the kernel did not finish after detach (QEMU ${qemu_rc}):\n${serial}")
endif()
message(STATUS "${out}")
