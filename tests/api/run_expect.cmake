# Runs CMD with ARGS ("|"-separated), checks the exit code (EXPECT_RC) and that stdout+stderr
# match the regular expression EXPECT. Used where a test needs both (ctest's
# PASS_REGULAR_EXPRESSION ignores the exit code).
string(REPLACE "|" ";" argv "${ARGS}")
execute_process(COMMAND ${CMD} ${argv} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT "${rc}" STREQUAL "${EXPECT_RC}")
  message(FATAL_ERROR "exit code ${rc}, expected ${EXPECT_RC}\nstdout:\n${out}\nstderr:\n${err}")
endif()
if(DEFINED EXPECT_STDERR_EMPTY AND NOT "${err}" STREQUAL "")
  message(FATAL_ERROR "stderr should be empty (no progress in a pipe), got:\n${err}")
endif()
if(DEFINED EXPECT_STDERR AND NOT "${err}" MATCHES "${EXPECT_STDERR}")
  message(FATAL_ERROR "stderr does not match '${EXPECT_STDERR}':\n${err}")
endif()
if(DEFINED EXPECT AND NOT "${out}${err}" MATCHES "${EXPECT}")
  message(FATAL_ERROR "output does not match '${EXPECT}'\nstdout:\n${out}\nstderr:\n${err}")
endif()
