# est-enroll's discovery parser (tools/enroll/links.c); corpus in
# corpus/fuzz_enroll_links.
if(TARGET est_client)
  est_fuzz_target(fuzz_enroll_links
    SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_enroll_links.c LIBS est_client)
endif()
