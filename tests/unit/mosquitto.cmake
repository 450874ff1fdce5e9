# mosquitto_est.so's callbacks against stubbed broker functions (defined in
# the test) and a real temporary database; CLOCK_MONOTONIC is faked with
# --wrap so TICK rate limiting is tested without sleeping.
est_unit_test(test_mosquitto
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_mosquitto.c
  LIBS mosquitto_est_obj est_control PkgConfig::SQLITE PkgConfig::CJSON
  WRAP clock_gettime)
