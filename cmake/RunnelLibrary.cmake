# Helpers that declare Runnel targets the same way everywhere.
#
# runnel_add_library(<name> SOURCES ... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...])
#   Declares library runnel_<name> with alias runnel::<name>. Public headers live in
#   <folder>/include/runnel/<name>/ and are exported; everything else stays private.
# runnel_add_test(<name> LABELS ... SOURCES ... DEPS ...)
#   Declares a doctest executable and registers it with ctest under the given labels.

# -Wnull-dereference is left out: GCC 12 reports it inside inlined third-party code (CLI11's
# string helpers) where no null pointer exists.
function(runnel_apply_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
                                           -Wold-style-cast -Wcast-align
                                           -Wno-missing-field-initializers)
  if(RUNNEL_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  # GCC warns that TSan cannot model Asio's standalone fences (std_fenced_block); the warning is
  # about Boost's headers, not our code, and would stop -Werror TSan builds of Asio users.
  if(RUNNEL_SANITIZE MATCHES "thread")
    target_compile_options(${target} PRIVATE -Wno-tsan)
  endif()
endfunction()

function(runnel_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(runnel_${name} ${ARG_SOURCES})
  add_library(runnel::${name} ALIAS runnel_${name})
  target_include_directories(runnel_${name}
    PUBLIC $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(runnel_${name} PUBLIC ${ARG_PUBLIC_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  target_compile_features(runnel_${name} PUBLIC cxx_std_20)
  runnel_apply_warnings(runnel_${name})
endfunction()

function(runnel_add_executable name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
  runnel_apply_warnings(${name})
endfunction()

function(runnel_add_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} runnel::testing)
  runnel_apply_warnings(${name})
  add_test(NAME ${name} COMMAND ${name})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT})
  if(RUNNEL_SANITIZE MATCHES "thread")
    set_tests_properties(${name} PROPERTIES ENVIRONMENT
      "TSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/tsan.supp halt_on_error=1")
  endif()
endfunction()
