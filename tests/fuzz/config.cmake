# coapd config parser, buffer API only (no file system access).
est_fuzz_target(fuzz_config SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_config.c
  LIBS coapd_config)
