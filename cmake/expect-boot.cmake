# cmake -P script: boots ISO once and passes only if QEMU exits with STATUS
# (33 = the kernel reported success, 35 = failure) and the serial output
# matches EXPECT (a regular expression). Used for the bootable kernel's own
# run and for the 32-bit entry's "no long mode" path (-cpu qemu32).
# Inputs: ISO WORKDIR STATUS EXPECT and the QEMU settings of qemu-command.cmake.

cmake_minimum_required(VERSION 3.25)

include(${CMAKE_CURRENT_LIST_DIR}/qemu-command.cmake)

kheap_qemu_command(cmd ${ISO} ${WORKDIR})
execute_process(COMMAND ${cmd} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                TIMEOUT 120 INPUT_FILE /dev/null)
message("${out}")
if(NOT rc EQUAL STATUS)
  message(FATAL_ERROR "expected QEMU exit status ${STATUS}, got '${rc}' ${err}")
endif()
if(NOT out MATCHES "${EXPECT}")
  message(FATAL_ERROR "expected the serial output to match '${EXPECT}'")
endif()
message("ok: exit status ${STATUS} and the expected output")
