# Runs one program of docs/guide.md (ctest test guide_<n>): it must exit with
# 0 and, when the guide shows its output (EXPECTED names that text), print
# exactly that on standard output.
#
#   cmake -DPROGRAM=<executable> [-DEXPECTED=<file>] -P run_snippet.cmake

execute_process(COMMAND ${PROGRAM}
    RESULT_VARIABLE status
    OUTPUT_VARIABLE output
    ERROR_VARIABLE errors)
if(NOT status EQUAL 0)
    message(FATAL_ERROR "${PROGRAM} failed (${status}):\n${output}${errors}")
endif()
if(EXPECTED)
    file(READ ${EXPECTED} expected)
    if(NOT output STREQUAL expected)
        message(FATAL_ERROR "${PROGRAM} printed:\n${output}\n"
                            "but docs/guide.md shows:\n${expected}")
    endif()
endif()
if(errors)
    message("${errors}")
endif()
