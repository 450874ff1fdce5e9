# est-enroll (tools/enroll): one cmocka binary per module of est_client.
foreach(t retry mp files)
  est_unit_test(test_enroll_${t}
    SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_enroll_${t}.c LIBS est_client)
endforeach()
# These check the client's CSRs and chain handling against the server's
# own CA code (est_core), which the client itself never links.
foreach(t csr certs)
  est_unit_test(test_enroll_${t}
    SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_enroll_${t}.c LIBS est_client est_core)
endforeach()
# The link-format parser lives in proto/ (shared with the server).
est_unit_test(test_enroll_links
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_enroll_links.c LIBS est_proto)
