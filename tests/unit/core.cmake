# plugin/est/enroll.c: the enrollment decision through every state, with a
# fake host API, real CAs and a throwaway database.
est_unit_test(test_enroll_core
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_enroll_core.c LIBS est_core PkgConfig::SQLITE)
