# plugin/est/dedup.c: answers kept for repeated CONs.
est_unit_test(test_dedup SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_dedup.c LIBS est_core)
