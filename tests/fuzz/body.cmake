est_fuzz_target(fuzz_body SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_body.c LIBS est_core)
