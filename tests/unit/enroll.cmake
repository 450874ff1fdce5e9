# est-enroll (tools/enroll): one cmocka binary per module of est_client.
if(TARGET est_client)
  foreach(t retry links csr certs mp files)
    est_unit_test(test_enroll_${t}
      SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_enroll_${t}.c LIBS est_client)
  endforeach()
endif()
