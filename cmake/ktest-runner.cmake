# cmake -P script: runs one kernel test image in QEMU and judges it.
#
# Inputs: ISO WORKDIR BOOT_TIMEOUT EXPECT_FAIL (comma-separated test names
# that must report "not ok") and the QEMU settings of qemu-command.cmake.
#
# The kernel prints KTAP ("KTAP version 1", "1..N", "ok K name",
# "not ok K name # reason") and "# running K name" before each test. A panic
# or exception inside a test is caught by the kernel itself. If the machine
# goes down anyway (triple fault: QEMU status 0; a hang: timeout; an exit in
# the middle of a test), the test that was running is reported "not ok" by
# name and QEMU is started again with fw_cfg opt/kheap/ktest-skip=K, so the
# kernel resumes after it. Success needs every test to report as expected
# AND the last boot to end through isa-debug-exit (33 or 35): status 0 never
# counts as success.
include(${CMAKE_CURRENT_LIST_DIR}/qemu-command.cmake)

cmake_minimum_required(VERSION 3.25)

if(NOT BOOT_TIMEOUT)
  set(BOOT_TIMEOUT 300)
endif()
string(REPLACE "," ";" expect_fail "${EXPECT_FAIL}")
get_filename_component(image ${ISO} NAME_WE)

set(plan -1)
set(skip 0)
set(boots 0)
while(TRUE)
  math(EXPR boots "${boots} + 1")
  kheap_qemu_command(cmd ${ISO} ${WORKDIR} -fw_cfg name=opt/kheap/ktest-skip,string=${skip})
  execute_process(COMMAND ${cmd}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE qemu_err
    TIMEOUT ${BOOT_TIMEOUT} INPUT_FILE /dev/null)
  message("${out}")
  if(qemu_err)
    message("qemu: ${qemu_err}")
  endif()

  # One list element per line. Brackets and semicolons have meaning in CMake
  # lists, so neutralise them first.
  string(REPLACE "\r" "" text "${out}")
  string(REPLACE ";" "," text "${text}")
  string(REPLACE "[" "(" text "${text}")
  string(REPLACE "]" ")" text "${text}")
  string(REPLACE "\n" ";" lines "${text}")
  set(running "")
  foreach(line IN LISTS lines)
    if(line MATCHES "^1\\.\\.([0-9]+)$")
      set(plan ${CMAKE_MATCH_1})
    elseif(line MATCHES "^# running ([0-9]+) (.+)$")
      set(running ${CMAKE_MATCH_1})
      set(name_${running} "${CMAKE_MATCH_2}")
    elseif(line MATCHES "^(not ok|ok) ([0-9]+) ([^ ]+)(.*)$")
      set(n ${CMAKE_MATCH_2})
      set(status_${n} "${CMAKE_MATCH_1}")
      set(name_${n} "${CMAKE_MATCH_3}")
      string(REGEX REPLACE "^ # " "" reason_${n} "${CMAKE_MATCH_4}")
      set(running "")
    endif()
  endforeach()

  if(plan EQUAL 0)
    message(FATAL_ERROR "${image}: the image contains no tests (KTAP plan 1..0)")
  endif()
  if(plan EQUAL -1)
    message(FATAL_ERROR "${image}: no KTAP plan line: the kernel did not reach its test runner (QEMU status: ${rc})")
  endif()
  if(running STREQUAL "")
    if(NOT (rc EQUAL 33 OR rc EQUAL 35))
      message(FATAL_ERROR "${image}: QEMU ended with status '${rc}' outside any test")
    endif()
    break()
  endif()

  # The machine went down inside test ${running}.
  if(rc EQUAL 0)
    set(why "machine reset (triple fault?): QEMU exit status 0")
  elseif(rc MATCHES "timeout")
    set(why "hung: no exit within ${BOOT_TIMEOUT} s")
  else()
    set(why "QEMU ended inside the test with status '${rc}'")
  endif()
  set(status_${running} "not ok")
  set(reason_${running} "crashed: ${why}")
  message("not ok ${running} ${name_${running}} # crashed: ${why}  (runner: restarting QEMU after it)")
  set(skip ${running})
  if(skip EQUAL plan OR boots GREATER 100)
    break()
  endif()
endwhile()

set(passed 0)
set(failed 0)
set(problems "")
foreach(n RANGE 1 ${plan})
  if(plan EQUAL 0)
    break()
  endif()
  if(NOT DEFINED status_${n})
    string(APPEND problems "  test ${n}: no result\n")
    math(EXPR failed "${failed} + 1")
    continue()
  endif()
  set(name "${name_${n}}")
  list(FIND expect_fail "${name}" expected_idx)
  if(expected_idx GREATER -1)
    set(want "not ok")
  else()
    set(want "ok")
  endif()
  if(status_${n} STREQUAL want)
    math(EXPR passed "${passed} + 1")
  else()
    math(EXPR failed "${failed} + 1")
    if(want STREQUAL "ok")
      string(APPEND problems "  FAILED ${n} ${name}: ${reason_${n}}\n")
    else()
      string(APPEND problems "  FAILED ${n} ${name}: expected 'not ok' (harness self-test), got 'ok'\n")
    endif()
  endif()
endforeach()
foreach(name IN LISTS expect_fail)
  set(found FALSE)
  foreach(n RANGE 1 ${plan})
    if("${name_${n}}" STREQUAL "${name}")
      set(found TRUE)
    endif()
  endforeach()
  if(NOT found)
    string(APPEND problems "  EXPECT_FAIL names '${name}', which did not run\n")
    math(EXPR failed "${failed} + 1")
  endif()
endforeach()

if(failed EQUAL 0 AND expect_fail STREQUAL "" AND NOT rc EQUAL 33)
  string(APPEND problems "  every test reported ok, but the kernel exited with QEMU status '${rc}', not 33\n")
  math(EXPR failed "${failed} + 1")
endif()

message("${image}: ${boots} boot(s), ${plan} tests: ${passed} as expected, ${failed} not")
if(failed GREATER 0 OR NOT problems STREQUAL "")
  message(FATAL_ERROR "${image}: kernel tests failed:\n${problems}")
endif()
