# The C programs of docs/guide.md, built and run as tests so that the guide
# cannot rot.
#
# Every ```c block of the guide is a complete program. Block n (counting
# from 1) becomes the executable guide_<n>, built like the examples (against
# the shared library, with the project's warnings), and the ctest test
# guide_<n>, labelled `guide`. When an ```output block follows it, the
# program's standard output must equal that block. Compiler messages point
# at the guide's own lines (#line).
#
# Included from the top-level CMakeLists.txt inside if(JAC_BUILD_TESTS), so
# the programs also join JAC_TEST_TARGETS (and so the valgrind runs).

set(JAC_GUIDE ${PROJECT_SOURCE_DIR}/docs/guide.md)
set(JAC_GUIDE_DIR ${PROJECT_BINARY_DIR}/guide)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${JAC_GUIDE})
file(MAKE_DIRECTORY ${JAC_GUIDE_DIR})

# Writes content to path unless it already holds exactly that, so that an
# unchanged snippet is not rebuilt.
function(jac_guide_write path content)
    if(EXISTS "${path}")
        file(READ "${path}" old)
        if(old STREQUAL content)
            return()
        endif()
    endif()
    file(WRITE "${path}" "${content}")
endfunction()

# The text is handled with string(FIND) and string(SUBSTRING) only, never as
# a list, so that the semicolons of C survive.
file(READ ${JAC_GUIDE} jac_guide_text)
set(jac_rest "${jac_guide_text}")
set(jac_line 1)
set(jac_count 0)
set(jac_fence_c "\n```c\n")
while(TRUE)
    string(FIND "${jac_rest}" "${jac_fence_c}" start)
    if(start LESS 0)
        break()
    endif()
    # Line of the first code line: lines before the fence, plus the fence.
    string(SUBSTRING "${jac_rest}" 0 ${start} before)
    string(REGEX MATCHALL "\n" newlines "${before}")
    list(LENGTH newlines n)
    math(EXPR jac_line "${jac_line} + ${n} + 2")
    math(EXPR body_start "${start} + 6")
    string(SUBSTRING "${jac_rest}" ${body_start} -1 jac_rest)
    string(FIND "${jac_rest}" "\n```" end)
    if(end LESS 0)
        message(FATAL_ERROR "${JAC_GUIDE}:${jac_line}: unterminated ```c block")
    endif()
    math(EXPR end_nl "${end} + 1")
    string(SUBSTRING "${jac_rest}" 0 ${end_nl} code)
    string(REGEX MATCHALL "\n" newlines "${code}")
    list(LENGTH newlines code_lines)
    string(SUBSTRING "${jac_rest}" ${end_nl} -1 jac_rest)

    math(EXPR jac_count "${jac_count} + 1")
    set(name guide_${jac_count})
    jac_guide_write(${JAC_GUIDE_DIR}/${name}.c
        "#line ${jac_line} \"${JAC_GUIDE}\"\n${code}")

    # An ```output block right after the program (blank lines between).
    set(expected_file "")
    string(REGEX MATCH "^```\n[ \n]*```output\n" output_fence "${jac_rest}")
    if(output_fence)
        string(LENGTH "${output_fence}" skip)
        string(SUBSTRING "${jac_rest}" ${skip} -1 after)
        string(FIND "${after}" "\n```" out_end)
        if(out_end LESS 0)
            message(FATAL_ERROR "${JAC_GUIDE}: unterminated ```output block "
                                "after the program at line ${jac_line}")
        endif()
        math(EXPR out_end "${out_end} + 1")
        string(SUBSTRING "${after}" 0 ${out_end} expected)
        set(expected_file ${JAC_GUIDE_DIR}/${name}.expected)
        jac_guide_write(${expected_file} "${expected}")
    endif()

    # jac_rest now starts at the program's closing fence.
    math(EXPR jac_line "${jac_line} + ${code_lines}")

    add_executable(${name} ${JAC_GUIDE_DIR}/${name}.c)
    target_link_libraries(${name} PRIVATE jacobian::jacobian m)
    set_target_properties(${name} PROPERTIES
        RUNTIME_OUTPUT_DIRECTORY ${JAC_GUIDE_DIR})
    jac_set_warnings(${name})
    add_test(NAME ${name}
        COMMAND ${CMAKE_COMMAND}
            -DPROGRAM=$<TARGET_FILE:${name}>
            -DEXPECTED=${expected_file}
            -P ${PROJECT_SOURCE_DIR}/tests/guide/run_snippet.cmake
        WORKING_DIRECTORY ${JAC_GUIDE_DIR})
    set_tests_properties(${name} PROPERTIES LABELS guide TIMEOUT 120)
    list(APPEND JAC_TEST_TARGETS ${name})
endwhile()

if(jac_count EQUAL 0)
    message(FATAL_ERROR "${JAC_GUIDE} has no ```c blocks")
endif()
