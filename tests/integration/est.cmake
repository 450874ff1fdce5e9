# EST-coaps end-to-end tests: real coapd + est_coaps.so, driven by
# coap-client-gnutls/-openssl and checked with certtool and python3-cbor2.
foreach(t est_discovery est_crts est_sen est_sren est_keygen est_att_pop est_approval est_expired est_reboot est_names est_revoke est_crl est_files est_hsretx est_reload est_logs est_metrics est_https est_https_limits est_https_pki est_https_ra)
  add_test(NAME it.${t} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/${t}.sh)
  set_tests_properties(it.${t} PROPERTIES LABELS integration TIMEOUT 300
    ENVIRONMENT "COAPD=$<TARGET_FILE:coapd>;EST_PLUGIN=$<TARGET_FILE:est_coaps>;EST_TEST_DATA=${PROJECT_SOURCE_DIR}/tests/data;EST_SCRIPTS=${PROJECT_SOURCE_DIR}/scripts;ESTCTL=$<$<TARGET_EXISTS:estctl>:$<TARGET_FILE:estctl>>")
endforeach()
# The loss run drives est-enroll too, and waits out retransmissions.
add_test(NAME it.est_loss COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/est_loss.sh)
set_tests_properties(it.est_loss PROPERTIES LABELS integration TIMEOUT 1800
  ENVIRONMENT "COAPD=$<TARGET_FILE:coapd>;EST_PLUGIN=$<TARGET_FILE:est_coaps>;EST_ENROLL=$<TARGET_FILE:est-enroll>;EST_TEST_DATA=${PROJECT_SOURCE_DIR}/tests/data;EST_SCRIPTS=${PROJECT_SOURCE_DIR}/scripts")
# est-enroll's CON back-off on the wire, and a repeated answer taken once.
add_test(NAME it.est_backoff COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/est_backoff.sh)
set_tests_properties(it.est_backoff PROPERTIES LABELS integration TIMEOUT 300
  ENVIRONMENT "COAPD=$<TARGET_FILE:coapd>;EST_PLUGIN=$<TARGET_FILE:est_coaps>;EST_ENROLL=$<TARGET_FILE:est-enroll>;EST_TEST_DATA=${PROJECT_SOURCE_DIR}/tests/data;EST_SCRIPTS=${PROJECT_SOURCE_DIR}/scripts")
# Registrar mode (RFC 9148 §5): two coapd, one the HTTPS upstream of the
# other; est-enroll too, and a slow upstream through tcpdelay.py.
add_test(NAME it.est_registrar COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/est_registrar.sh)
set_tests_properties(it.est_registrar PROPERTIES LABELS integration TIMEOUT 600
  ENVIRONMENT "COAPD=$<TARGET_FILE:coapd>;EST_PLUGIN=$<TARGET_FILE:est_coaps>;ESTCTL=$<TARGET_FILE:estctl>;EST_ENROLL=$<TARGET_FILE:est-enroll>;EST_TEST_DATA=${PROJECT_SOURCE_DIR}/tests/data;EST_SCRIPTS=${PROJECT_SOURCE_DIR}/scripts")
# The CA key on a SoftHSM2 token (docs/decisions.md §20): est-enroll and
# coap-client-gnutls/-openssl, the token taken away and back, bad PINs.
add_test(NAME it.est_hsm COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/est_hsm.sh)
set_tests_properties(it.est_hsm PROPERTIES LABELS integration TIMEOUT 300
  ENVIRONMENT "COAPD=$<TARGET_FILE:coapd>;EST_PLUGIN=$<TARGET_FILE:est_coaps>;ESTCTL=$<TARGET_FILE:estctl>;EST_ENROLL=$<TARGET_FILE:est-enroll>;EST_TEST_DATA=${PROJECT_SOURCE_DIR}/tests/data;EST_SCRIPTS=${PROJECT_SOURCE_DIR}/scripts")
# -V and --version on every tool.
add_test(NAME it.versions COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/versions.sh)
set_tests_properties(it.versions PROPERTIES LABELS integration TIMEOUT 60
  ENVIRONMENT "COAPD=$<TARGET_FILE:coapd>;ESTCTL=$<TARGET_FILE:estctl>;EST_ENROLL=$<TARGET_FILE:est-enroll>;EST_BENCH=$<TARGET_FILE:est-bench>")
# The installed tree, moved, finds its plugins (plugin_dir, host/main.c).
add_test(NAME it.est_install COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/est_install.sh)
set_tests_properties(it.est_install PROPERTIES LABELS integration TIMEOUT 120
  ENVIRONMENT "COAPD=$<TARGET_FILE:coapd>;EST_BUILD_DIR=${CMAKE_BINARY_DIR};EST_TEST_DATA=${PROJECT_SOURCE_DIR}/tests/data;EST_SCRIPTS=${PROJECT_SOURCE_DIR}/scripts")
