# EST-coaps end-to-end tests: real coapd + est_coaps.so, driven by
# coap-client-gnutls/-openssl and checked with certtool and python3-cbor2.
foreach(t est_discovery est_crts est_sen est_sren est_keygen est_att_pop est_approval est_expired est_loss)
  add_test(NAME it.${t} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/${t}.sh)
  set_tests_properties(it.${t} PROPERTIES LABELS integration TIMEOUT 300
    ENVIRONMENT "COAPD=$<TARGET_FILE:coapd>;EST_PLUGIN=$<TARGET_FILE:est_coaps>;EST_TEST_DATA=${PROJECT_SOURCE_DIR}/tests/data;EST_SCRIPTS=${PROJECT_SOURCE_DIR}/scripts;ESTCTL=$<$<TARGET_EXISTS:estctl>:$<TARGET_FILE:estctl>>")
endforeach()
# The loss run waits out retransmissions: give it room.
set_tests_properties(it.est_loss PROPERTIES TIMEOUT 900)
