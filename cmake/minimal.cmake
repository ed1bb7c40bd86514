# The dependency-free build (CWBA_MINIMAL): the layers that need no outside
# library -- core (without SHA-256, which is OpenSSL's), the weights map of
# io, nn, quant and codec -- as libcwba, and the unit tests of those layers
# built against tests/minimal/cmocka.h (a stand-in for the part of cmocka
# they use). This is what the ARM cross build compiles and what `make
# arm-test` runs under qemu-user: the edge side of split inference
# (forward to the split, quantize, encode) and the cloud side's decoder.
set(CWBA_MIN_SOURCES
  src/core/status.c src/core/threads.c src/core/isa.c src/core/fileio.c
  src/io/weights.c)
file(GLOB CWBA_MIN_LAYERS CONFIGURE_DEPENDS src/nn/*.c src/quant/*.c src/codec/*.c)
# The standard-codec anchors need libjpeg, libwebp and libavcodec.
list(FILTER CWBA_MIN_LAYERS EXCLUDE REGEX "/src/codec/anchor[^/]*\\.c$")
find_package(Threads REQUIRED)
add_library(cwba STATIC ${CWBA_MIN_SOURCES} ${CWBA_MIN_LAYERS})
target_include_directories(cwba PUBLIC include PRIVATE src)
target_link_libraries(cwba PUBLIC Threads::Threads m)
target_compile_definitions(cwba PUBLIC CWBA_SOURCE_DIR="${CMAKE_SOURCE_DIR}" CWBA_MINIMAL=1)

enable_testing()
# Each of these is the same source as in the full build; the ones left out
# need jansson, zlib, liblzma, libjpeg/png, curl, the reference models'
# card or a CLI. "slow" tests are never in this list.
set(CWBA_MIN_TESTS
  test_core_isa test_nn_layers test_nn_blocked test_nn_directconv test_nn_winograd
  test_nn_isa_golden
  test_quant_quantizers test_quant_qmath test_quant_alloc test_quant_naive_fast test_quant_table
  test_codec_rc test_codec_stream test_codec_corpus)
add_library(cwba_cmocka_standin STATIC tests/minimal/cmocka.c)
target_include_directories(cwba_cmocka_standin PUBLIC tests/minimal)
foreach(name ${CWBA_MIN_TESTS})
  add_executable(${name} tests/${name}.c tests/testutil.c)
  target_include_directories(${name} PRIVATE src tests)
  target_link_libraries(${name} PRIVATE cwba cwba_cmocka_standin)
  add_test(NAME ${name} COMMAND ${name} WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
  set(env "CWBA_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
  if(CMAKE_CROSSCOMPILING_EMULATOR)
    list(APPEND env "CWBA_TEST_EMULATED=1") # tests/testutil.h: tu_emulated
  endif()
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "${env}" TIMEOUT 900)
endforeach()
# CWBA_MAX_ISA=scalar: the cap falls back from NEON to the portable kernels.
add_test(NAME test_core_isa_capped COMMAND test_core_isa WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(test_core_isa_capped PROPERTIES ENVIRONMENT "CWBA_MAX_ISA=scalar" TIMEOUT 900)
