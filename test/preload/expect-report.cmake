# cmake -P script: runs PROGRAM BUG with LD_PRELOAD=LIB (a hardened kheap library) and KHEAP_STATS=1 and
# fails unless the process is killed by abort() after printing the report for BUG, naming the
# pointer and the call sites symbolized by dladdr() (drop_block / make_block in the program).
find_program(ENV_PROGRAM env REQUIRED)
execute_process(COMMAND ${ENV_PROGRAM} LD_PRELOAD=${LIB} KHEAP_STATS=1 ${PROGRAM} ${BUG}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(BUG STREQUAL "double-free")
  set(kind "double free")
  set(sites "detected in the call from 0x[0-9a-f]+ \\(drop_block\\+0x[0-9a-f]+ in [^)]*preload_bugs\\)")
else()
  set(kind "use-after-free write")
  # The write is at offset 40 of the freed block; it is found when make_block() reuses the block.
  set(sites "first bad byte at offset 40\n  detected in the call from 0x[0-9a-f]+ \\(make_block\\+0x[0-9a-f]+ in [^)]*preload_bugs\\)")
endif()
if(NOT rc MATCHES "aborted")  # killed by SIGABRT: CMake says "Child aborted" or "Subprocess aborted"
  message(FATAL_ERROR "expected abort(), got '${rc}'\nstdout:\n${out}\nstderr:\n${err}")
endif()
if(out MATCHES "bug not detected")
  message(FATAL_ERROR "the program finished: the ${BUG} went unnoticed")
endif()
if(NOT err MATCHES "kheap: HEAP ERROR: ${kind} on 0x[0-9a-f]+ \\([a-z_]+ backend\\)\n")
  message(FATAL_ERROR "no '${kind}' report:\n${err}")
endif()
if(NOT err MATCHES "detected in the call from 0x[0-9a-f]+ \\(")
  message(FATAL_ERROR "report does not name the faulting call:\n${err}")
endif()
if(NOT err MATCHES "${sites}")
  message(FATAL_ERROR "report does not name the sites (${sites}):\n${err}")
endif()
message(STATUS "${kind} caught:\n${err}")
