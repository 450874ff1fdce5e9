# The store: SQLite persistence (docs/decisions.md §7). sqlite3_open_v2 and
# sqlite3_step are wrapped for fault injection (disk full, I/O errors,
# busy, and a process killed in the middle of a transaction).
est_unit_test(test_store SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_store.c
  LIBS est_store WRAP sqlite3_open_v2 sqlite3_step)
# The same tests on PostgreSQL, plus its own (test_store.c, pg_only).
est_pg_variant(unit.test_store COMMAND test_store)
