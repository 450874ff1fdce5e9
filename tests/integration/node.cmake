# Interop with a client stack that shares no code with libcoap: werift-dtls +
# coap-packet in Node.js (tests/interop/node). The script runs npm ci into
# its temp dir (needs node, npm and the npm registry) and fails without them.
add_test(NAME it.est_node COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/est_node.sh)
set_tests_properties(it.est_node PROPERTIES LABELS integration TIMEOUT 300
  ENVIRONMENT "COAPD=$<TARGET_FILE:coapd>;EST_PLUGIN=$<TARGET_FILE:est_coaps>;EST_TEST_DATA=${PROJECT_SOURCE_DIR}/tests/data;EST_SCRIPTS=${PROJECT_SOURCE_DIR}/scripts;ESTCTL=$<TARGET_FILE:estctl>")
