# The keygen worker thread (plugin/est/worker.c, in est_core). worker_start()'s
# calloc, eventfd and pthread_create are wrapped to fail on demand, and
# pthread_join to hook worker_stop() between its stop flag and the join.
est_unit_test(test_worker SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_worker.c
  LIBS est_core WRAP calloc eventfd pthread_create pthread_join)
