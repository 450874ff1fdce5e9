est_unit_test(test_body SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_body.c LIBS est_core)
