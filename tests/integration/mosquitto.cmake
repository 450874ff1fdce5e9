# mosquitto_est.so end to end: a real mosquitto broker with the plugin next
# to coapd + est_coaps.so on one database, driven by coap-client,
# mosquitto_sub/_rr/_pub, estctl and mosquitto_client.py; replies and
# events are validated against schemas/ (Debian's python3-jsonschema).
add_test(NAME it.mosquitto COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/mosquitto_est.sh)
set_tests_properties(it.mosquitto PROPERTIES LABELS integration TIMEOUT 300
  ENVIRONMENT "COAPD=$<TARGET_FILE:coapd>;EST_PLUGIN=$<TARGET_FILE:est_coaps>;ESTCTL=$<TARGET_FILE:estctl>;MOSQ_EST_PLUGIN=$<TARGET_FILE:mosquitto_est>;EST_TEST_DATA=${PROJECT_SOURCE_DIR}/tests/data;EST_SCHEMAS=${PROJECT_SOURCE_DIR}/schemas;EST_SANITIZE=$<BOOL:${EST_SANITIZE}>;CC=${CMAKE_C_COMPILER}")
