# plugin/est/names.c: the issuance policy (docs/decisions.md §13), with the
# pki.c profile it comes with (cert_eku, max_cert_bytes).
est_unit_test(test_names SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_names.c LIBS est_core)
