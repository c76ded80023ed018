# cmake -P script, two modes:
#   -DREF=<file> -DWORKDIR=<dir> -DCMD=<list> -DWRITE_REF=ON: runs CMD in WORKDIR with glibc's malloc
#     (the reference, once per program) and stores its stdout in REF; fails unless it exits 0.
#   -DREF=<file> -DLIB=<lib.so> -DWORKDIR=<dir> -DCMD=<list>: runs CMD with LD_PRELOAD=LIB and
#     KHEAP_STATS=1 and fails unless it exits 0 with stdout identical to REF and the library's
#     exit-time stats show it served allocations, found no error and a healthy heap.
foreach(var REF WORKDIR CMD)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "compare.cmake: ${var} is not set")
  endif()
endforeach()
file(MAKE_DIRECTORY ${WORKDIR})
set(common_env PYTHONMALLOC=malloc PYTHONHASHSEED=0 LC_ALL=C)

if(WRITE_REF)
  execute_process(COMMAND ${CMAKE_COMMAND} -E env ${common_env} ${CMD} WORKING_DIRECTORY ${WORKDIR}
    RESULT_VARIABLE rc_ref OUTPUT_VARIABLE out_ref ERROR_VARIABLE err_ref)
  if(NOT rc_ref EQUAL 0)
    message(FATAL_ERROR "reference run (glibc malloc) failed: ${rc_ref}\n${err_ref}")
  endif()
  file(WRITE ${REF} "${out_ref}")
  return()
endif()
if(NOT EXISTS ${LIB})
  message(FATAL_ERROR "compare.cmake: no library ${LIB}")
endif()
if(NOT EXISTS ${REF})
  message(FATAL_ERROR "compare.cmake: no reference output ${REF} (its fixture test did not run)")
endif()
file(READ ${REF} out_ref)
execute_process(COMMAND ${CMAKE_COMMAND} -E env ${common_env} LD_PRELOAD=${LIB} KHEAP_STATS=1 ${CMD}
  WORKING_DIRECTORY ${WORKDIR} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "run under ${LIB} failed: ${rc}\nstderr:\n${err}")
endif()
if(NOT out STREQUAL out_ref)
  file(WRITE ${WORKDIR}/glibc.out "${out_ref}")
  file(WRITE ${WORKDIR}/kheap.out "${out}")
  message(FATAL_ERROR "output differs from glibc's: diff ${WORKDIR}/glibc.out ${WORKDIR}/kheap.out")
endif()
string(LENGTH "${out}" n)
if(n EQUAL 0)
  message(FATAL_ERROR "the program printed nothing")
endif()
# Every process of the run prints its stats; each must show work done, no error, a healthy heap.
string(REGEX MATCHALL "kheap: stats \\(backend [a-z_]+" stats "${err}")
list(LENGTH stats nproc)
string(REGEX MATCHALL "total_allocs +[1-9][0-9]*" used "${err}")
string(REGEX MATCHALL "errors_detected +0\n" clean "${err}")
string(REGEX MATCHALL "check +0\n" healthy "${err}")
list(LENGTH used nused)
list(LENGTH clean nclean)
list(LENGTH healthy nhealthy)
if(nproc EQUAL 0 OR NOT nused EQUAL nproc OR NOT nclean EQUAL nproc OR NOT nhealthy EQUAL nproc)
  message(FATAL_ERROR "KHEAP_STATS: expected allocations, 0 errors and check 0 from each of ${nproc} "
                      "processes:\n${err}")
endif()
message(STATUS "identical output (${n} bytes), ${nproc} processes on ${LIB}")
