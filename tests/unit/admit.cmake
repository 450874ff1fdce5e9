# host/admit.c: the admission decisions, pure (host/admit_io.c is the libcoap side).
est_unit_test(test_admit SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_admit.c
  ${PROJECT_SOURCE_DIR}/host/admit.c)
