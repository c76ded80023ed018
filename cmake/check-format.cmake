# cmake -DCLANG_FORMAT=<exe> -DSOURCE_DIR=<repo> [-DFIX=ON] -P check-format.cmake
# Checks (or, with FIX, applies) .clang-format on every C file under src/ and test/.
file(GLOB_RECURSE files RELATIVE ${SOURCE_DIR} ${SOURCE_DIR}/src/*.[ch] ${SOURCE_DIR}/test/*.[ch])
list(SORT files)
if(FIX)
  execute_process(COMMAND ${CLANG_FORMAT} -i ${files} WORKING_DIRECTORY ${SOURCE_DIR} RESULT_VARIABLE rc)
else()
  execute_process(COMMAND ${CLANG_FORMAT} --dry-run --Werror ${files} WORKING_DIRECTORY ${SOURCE_DIR}
                  RESULT_VARIABLE rc)
endif()
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "clang-format: these files do not follow .clang-format (apply it: cmake --build build --target format)")
endif()
list(LENGTH files n)
message(STATUS "clang-format: ${n} files follow .clang-format")
