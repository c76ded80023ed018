# cmake -P script: boots ISO and passes only if the kernel fails the way it
# should: QEMU exit status 35 (isa-debug-exit failure) and EXPECT (a regular
# expression) in the serial output. Used to check the 32-bit entry's
# "no long mode" path on a CPU without long mode (-cpu qemu32).
# Inputs: ISO WORKDIR EXPECT and the QEMU settings of qemu-command.cmake.

cmake_minimum_required(VERSION 3.25)

include(${CMAKE_CURRENT_LIST_DIR}/qemu-command.cmake)

kheap_qemu_command(cmd ${ISO} ${WORKDIR})
execute_process(COMMAND ${cmd} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                TIMEOUT 120 INPUT_FILE /dev/null)
message("${out}")
if(NOT rc EQUAL 35)
  message(FATAL_ERROR "expected QEMU exit status 35 (kernel reported failure), got '${rc}' ${err}")
endif()
if(NOT out MATCHES "${EXPECT}")
  message(FATAL_ERROR "expected the serial output to match '${EXPECT}'")
endif()
message("ok: exit status 35 and the expected message")
