# pki.c: CA load, CSR checks, issuance, keygen, classification.
est_unit_test(test_pki SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_pki.c LIBS est_core)
