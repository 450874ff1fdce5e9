est_fuzz_target(fuzz_http SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_http.c LIBS est_proto)
