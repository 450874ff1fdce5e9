# pki.c PKCS#7 readers and p7asn.c; corpus in corpus/fuzz_p7.
est_fuzz_target(fuzz_p7 SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_p7.c LIBS est_core)
