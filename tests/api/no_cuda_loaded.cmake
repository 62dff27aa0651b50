# Runs CMD with ARGS ("|"-separated) under LD_DEBUG=files and fails when the process loads any
# CUDA library (runtime, cuBLAS, driver module), or when it exits with another code than
# EXPECT_RC (issue #17 item 14: CPU-only work does not pay for CUDA).
string(REPLACE "|" ";" argv "${ARGS}")
execute_process(COMMAND ${CMAKE_COMMAND} -E env LD_DEBUG=files ${CMD} ${argv}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT "${rc}" STREQUAL "${EXPECT_RC}")
  message(FATAL_ERROR "exit code ${rc}, expected ${EXPECT_RC}\nstderr:\n${err}")
endif()
if(NOT "${err}" MATCHES "file=")
  message(FATAL_ERROR "LD_DEBUG=files printed nothing: cannot check what was loaded")
endif()
if("${err}" MATCHES "file=[^ ]*(libcudart|libcublas|libnvl_cuda)[^ ]*")
  message(FATAL_ERROR "CUDA library loaded: ${CMAKE_MATCH_0}")
endif()
