# coapd host integration tests: tests/integration/host_*.sh, each run by bash
# with the binaries under test in the environment (see lib.sh).
add_subdirectory(${PROJECT_SOURCE_DIR}/tests/data/testplug
  ${CMAKE_CURRENT_BINARY_DIR}/testplug)
# Building `testplug` also builds the wrong-ABI copy the tests need.
add_dependencies(testplug testplug_badabi)

file(GLOB host_scripts CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/host_*.sh)
foreach(script ${host_scripts})
  get_filename_component(name ${script} NAME_WE)
  add_test(NAME it.${name} COMMAND bash ${script})
  set_tests_properties(it.${name} PROPERTIES LABELS integration TIMEOUT 120
    ENVIRONMENT "COAPD=$<TARGET_FILE:coapd>;TESTPLUG=$<TARGET_FILE:testplug>;TESTPLUG_BADABI=$<TARGET_FILE:testplug_badabi>;EST_TEST_DATA=${PROJECT_SOURCE_DIR}/tests/data")
endforeach()
# The flood takes a core for half a minute: alone, so it neither slows the
# other tests nor is slowed by them.
if(TEST it.host_flood)
  set_tests_properties(it.host_flood PROPERTIES RUN_SERIAL TRUE TIMEOUT 150)
endif()
