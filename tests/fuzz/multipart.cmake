est_fuzz_target(fuzz_multipart SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_multipart.c LIBS est_proto)
