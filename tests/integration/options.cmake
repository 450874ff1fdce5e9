# Plugin option tables: coapd --help-plugin on both plugins, coapd refusing
# bad est_coaps.so options before init, and README.md's option reference
# kept equal to the tables (options.sh).
add_test(NAME it.options COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/options.sh)
set_tests_properties(it.options PROPERTIES LABELS integration TIMEOUT 120
  ENVIRONMENT "COAPD=$<TARGET_FILE:coapd>;EST_PLUGIN=$<TARGET_FILE:est_coaps>;MOSQ_EST_PLUGIN=$<TARGET_FILE:mosquitto_est>;TESTPLUG=$<TARGET_FILE:testplug>;EST_TEST_DATA=${PROJECT_SOURCE_DIR}/tests/data;EST_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
