est_unit_test(test_multipart SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_multipart.c LIBS est_proto)
