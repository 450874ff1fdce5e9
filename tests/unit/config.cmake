# coapd config parser (host/config.c).
est_unit_test(test_config SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_config.c
  LIBS coapd_config)
