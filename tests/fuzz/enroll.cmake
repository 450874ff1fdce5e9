# The discovery parser est-enroll uses (proto/links.c); corpus in
# corpus/fuzz_enroll_links.
est_fuzz_target(fuzz_enroll_links
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_enroll_links.c LIBS est_proto)
