# The operator command layer (control/ctl.h) against a real temporary
# database: every command, strict types, may_write refusals, envelopes,
# events.
est_unit_test(test_ctl SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_ctl.c
  LIBS est_control PkgConfig::SQLITE)
