# The option-table parser (common/opts.c): KEY VALUE lines against a table
# with every type; corpus in corpus/fuzz_opts, replayed by plain ctest.
est_fuzz_target(fuzz_opts SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_opts.c
  LIBS est_common)
