est_unit_test(test_policy SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_policy.c LIBS est_core)
