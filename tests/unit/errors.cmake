est_unit_test(test_errors SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_errors.c LIBS est_common)
