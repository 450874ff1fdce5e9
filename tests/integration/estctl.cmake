# estctl against a real database. coapd's EST plugin does not create
# pending requests yet, so seed_store fills the database through the store
# API instead. The JSON output is checked against schemas/ with
# /usr/bin/python3 (Debian's python3-jsonschema).
add_executable(seed_store ${CMAKE_CURRENT_SOURCE_DIR}/seed_store.c)
target_link_libraries(seed_store PRIVATE est_options est_store)

add_test(NAME it.estctl COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/estctl.sh)
set_tests_properties(it.estctl PROPERTIES LABELS integration TIMEOUT 180
  ENVIRONMENT "ESTCTL=$<TARGET_FILE:estctl>;SEED_STORE=$<TARGET_FILE:seed_store>;EST_SCHEMAS=${PROJECT_SOURCE_DIR}/schemas;EST_TEST_DATA=${PROJECT_SOURCE_DIR}/tests/data")
