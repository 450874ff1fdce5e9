/**
 * @file store_schema.h
 * @brief Internal: the migrations from schemas/NNN_*.sql, embedded at build
 * time by store/embed_sql.cmake (generated store_schema.c).
 */
#ifndef EST_STORE_SCHEMA_H
#define EST_STORE_SCHEMA_H

/** One migration: applying it moves user_version from version-1 to version. */
typedef struct store_migration {
  int version;      /**< 1, 2, ... in order, no gaps */
  const char *name; /**< file name, for diagnostics */
  const char *sql;  /**< NUL-terminated SQL script */
} store_migration;

/** SQLite (schemas/NNN_*.sql) and PostgreSQL (schemas/pg/NNN_*.sql), the
 *  same count of each. */
extern const store_migration store_migrations[];
extern const store_migration store_migrations_pg[];
extern const int store_migrations_count;

#endif /* EST_STORE_SCHEMA_H */
