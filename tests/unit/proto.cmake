est_unit_test(test_proto SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_proto.c LIBS est_proto)
# plugin/est/status.c: est_err to CoAP response codes.
est_unit_test(test_status SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_status.c LIBS est_core)
