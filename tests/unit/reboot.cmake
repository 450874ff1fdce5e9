# host/reboot.c: the parsers of the reboot workaround.
est_unit_test(test_reboot SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_reboot.c
  ${PROJECT_SOURCE_DIR}/host/reboot.c ${PROJECT_SOURCE_DIR}/host/addr.c LIBS PkgConfig::COAP)
