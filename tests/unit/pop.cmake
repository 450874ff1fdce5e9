est_unit_test(test_pop SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_pop.c LIBS est_core)
