# The operator command layer: ctl_run_envelope() on arbitrary control
# messages against a temporary database; corpus in corpus/fuzz_ctl.
est_fuzz_target(fuzz_ctl SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_ctl.c
  LIBS est_control)
