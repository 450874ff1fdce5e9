# est-enroll end to end against coapd + est_coaps.so: enroll.sh CASE runs as
# it.enroll_CASE.
foreach(case commands labels pop errors renew limits pending approve)
  add_test(NAME it.enroll_${case} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/enroll.sh ${case})
  set_tests_properties(it.enroll_${case} PROPERTIES LABELS integration TIMEOUT 300
    ENVIRONMENT "COAPD=$<TARGET_FILE:coapd>;EST_PLUGIN=$<TARGET_FILE:est_coaps>;EST_ENROLL=$<TARGET_FILE:est-enroll>;EST_TEST_DATA=${PROJECT_SOURCE_DIR}/tests/data;EST_SCRIPTS=${PROJECT_SOURCE_DIR}/scripts;ESTCTL=$<TARGET_FILE:estctl>")
endforeach()
