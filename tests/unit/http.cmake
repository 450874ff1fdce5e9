est_unit_test(test_http SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_http.c LIBS est_proto)
