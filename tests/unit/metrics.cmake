# host/metrics.c: the metrics registry and its Prometheus text rendering
# (host/metrics_http.c, the libmicrohttpd side, runs in it.est_metrics).
est_unit_test(test_metrics SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_metrics.c
  ${PROJECT_SOURCE_DIR}/host/metrics.c LIBS est_common PkgConfig::COAP m)
# plugin/est/metrics.c on that registry, and on a host without ABI 1.3.
est_unit_test(test_est_metrics SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_est_metrics.c
  ${PROJECT_SOURCE_DIR}/host/metrics.c LIBS est_core m)
