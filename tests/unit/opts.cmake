# The option-table parser (common/opts.c) and the plugin descriptor's option
# member (include/coapd/plugin.h needs libcoap's headers, not its library).
est_unit_test(test_opts SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_opts.c
  LIBS est_common PkgConfig::COAP)
# The host's tick scheduling (host/tick.c), with a fake clock. Registered
# here, next to the options, to keep to one include line in CMakeLists.txt.
est_unit_test(test_tick SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_tick.c
  LIBS coapd_config)
