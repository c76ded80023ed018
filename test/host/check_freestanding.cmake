# Compiles src/alloc with the kernel's flags (-ffreestanding -mcmodel=kernel -mgeneral-regs-only ...)
# and fails if the objects need any symbol but memcpy/memset/memmove or each other's.
# HARDENING (0 or 1) is passed as -DKHEAP_HARDENING: both modes must stay freestanding.
if(NOT DEFINED HARDENING)
  set(HARDENING 0)
endif()
file(MAKE_DIRECTORY ${OUT})
set(objs)
foreach(src ${SOURCES})
  get_filename_component(name ${src} NAME_WE)
  execute_process(COMMAND ${CC} -std=c11 -Wall -Wextra -Werror -O2 -ffreestanding -nostdlib
                          -mno-red-zone -mcmodel=kernel -fno-pic -mgeneral-regs-only
                          -DKHEAP_HARDENING=${HARDENING}
                          -c ${src} -o ${OUT}/${name}.o
                  RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "freestanding compile failed: ${src}")
  endif()
  list(APPEND objs ${OUT}/${name}.o)
endforeach()
execute_process(COMMAND ld -r -o ${OUT}/alloc.o ${objs} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "ld -r failed")
endif()
execute_process(COMMAND nm -u ${OUT}/alloc.o OUTPUT_VARIABLE undef)
string(REGEX REPLACE "[ \t]*U (memcpy|memset|memmove)\n" "" rest "${undef}")
string(STRIP "${rest}" rest)
if(NOT rest STREQUAL "")
  message(FATAL_ERROR "src/alloc needs symbols a freestanding kernel does not have:\n${rest}")
endif()
message(STATUS "src/alloc (KHEAP_HARDENING=${HARDENING}) is freestanding; external symbols: ${undef}")
