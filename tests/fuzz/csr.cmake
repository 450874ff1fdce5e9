# pki.c CSR parsing and checks; corpus in corpus/fuzz_csr.
est_fuzz_target(fuzz_csr SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_csr.c LIBS est_core)
