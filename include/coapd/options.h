/**
 * @file options.h
 * @brief Declarative option tables: what a plugin accepts, in one place.
 *
 * A plugin describes every option it takes in one const array of
 * ::coapd_opt wrapped in a ::coapd_opt_table. The same table then drives
 * everything about options:
 *  - coapd checks each `plugin_opt_KEY VALUE` line against it before the
 *    plugin's init() runs (coapd_plugin.options, ABI 1.1),
 *  - the plugin parses its options with it (common/opts.h, which stores each
 *    value into the plugin's own struct at the entry's `offset`),
 *  - `coapd --help-plugin PATH` prints it, and the README's option reference
 *    is checked against that output (tests/integration/options.sh).
 * Unknown, repeated and bad values are therefore refused the same way, with
 * the same `FILE:LINE: problem` text, by every reader.
 *
 * This header needs no libcoap: a shared object that is not a coapd plugin
 * (mosquitto_est.so) can publish its table as the symbol
 * @ref COAPD_OPTIONS_SYMBOL, so `coapd --help-plugin` can print it too.
 *
 * Append-only, like plugin.h: new members go at the end of ::coapd_opt and
 * ::coapd_opt_table, and both carry their size (`entry_size`, `size`), so a
 * reader steps through `entries` by `entry_size`, never by its own sizeof.
 */
#ifndef COAPD_OPTIONS_H
#define COAPD_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** What kind of value an option takes, and the C type it is stored as. */
typedef enum coapd_opt_type {
  /** Any text, not empty. Stored as `const char *` (borrowed). */
  COAPD_OPT_STRING = 1,
  /** A file name, not empty. Stored as `const char *` (borrowed); a
   *  relative path is resolved by the reader, not by the parser. */
  COAPD_OPT_PATH = 2,
  /** Exactly `on` or `off`. Stored as `bool`. */
  COAPD_OPT_BOOL = 3,
  /** A decimal integer from `min` to `max` (an optional `-`, digits only).
   *  Stored as `long long`. */
  COAPD_OPT_INT = 4,
  /** Exactly one of `words`. Stored as `int`: the index of the word. */
  COAPD_OPT_ENUM = 5,
  /** Comma-separated items; blanks around an item are not part of it and
   *  empty items do not count. From `min` to `max` items of at most
   *  `item_max` bytes each. Stored as `const char *` (borrowed, the whole
   *  text; walk it with est_opts_list_next() in common/opts.h). */
  COAPD_OPT_LIST = 6,
  COAPD_OPT_TYPE__MAX /**< sentinel; new types go before it */
} coapd_opt_type;

/** coapd_opt.flags: the option must be given (it then has no default). */
#define COAPD_OPT_REQUIRED 0x1u
/** coapd_opt.flags: the option may be given more than once; the stored
 *  value is the last, and the plugin reads every line itself (through
 *  option_at). A host older than this flag refuses the repeats. */
#define COAPD_OPT_REPEATABLE 0x2u

/**
 * Optional extra test of a value that already has the right type. Return 0
 * to accept; else write a short reason (no `FILE:LINE`, no option name)
 * into @p why and return -1. It must be pure: coapd calls it before the
 * plugin's init(), on any value, and the plugin calls it again.
 */
typedef int (*coapd_opt_check_fn)(const char *value, char *why, size_t why_len);

/** One option. Fill it with designated initialisers and a COAPD_OPT_*_IN()
 *  macro, which sets `type` and `offset` together. */
typedef struct coapd_opt {
  /** KEY of `plugin_opt_KEY`: 1 to 64 of `[A-Za-z0-9_.-]`, unique in the
   *  table. A Mosquitto plugin needs at least 3
   *  (docs/mosquitto-2.0.11.md §0.3). */
  const char *name;
  coapd_opt_type type;
  uint32_t flags; /**< COAPD_OPT_REQUIRED, COAPD_OPT_REPEATABLE, or 0 */
  /** The default, written as it would be in the config, or NULL: none
   *  (the stored value is then left as the caller initialised it). */
  const char *def;
  /** One line of help (at most 240 bytes, no control characters). */
  const char *doc;
  /** Where the parsed value goes: offset in the caller's struct. */
  size_t offset;
  /** INT: the range. LIST: the number of items. Else unused. */
  long long min, max;
  /** Most bytes in the value; 0: the parser's own cap (EST_OPTS_VALUE_MAX). */
  size_t max_len;
  /** LIST: most bytes in one item; 0: no cap beyond max_len. */
  size_t item_max;
  /** ENUM: the allowed words, NULL-terminated. */
  const char *const *words;
  /** Optional extra test, or NULL. */
  coapd_opt_check_fn check;
} coapd_opt;

/** A table of options, as a plugin publishes it. */
typedef struct coapd_opt_table {
  uint32_t size;       /**< sizeof(coapd_opt_table) in the publisher */
  uint32_t entry_size; /**< sizeof(coapd_opt) in the publisher */
  /** Who reads these options, e.g. "est-coaps"; --help-plugin prints it. */
  const char *name;
  const coapd_opt *entries; /**< `count` entries, `entry_size` bytes apart */
  size_t count;
} coapd_opt_table;

/** The least `size` / `entry_size` a reader accepts (the first revision). */
#define COAPD_OPT_TABLE_SIZE_1_1                                             \
  (offsetof(coapd_opt_table, count) + sizeof(size_t))
#define COAPD_OPT_SIZE_1_1                                                   \
  (offsetof(coapd_opt, check) + sizeof(coapd_opt_check_fn))

/** Initialise a ::coapd_opt_table from a named array of ::coapd_opt. */
#define COAPD_OPT_TABLE(tname, array)                                        \
  {sizeof(coapd_opt_table), sizeof(coapd_opt), (tname), (array),            \
   sizeof(array) / sizeof((array)[0])}

/** Symbol under which a non-coapd plugin may export a const
 *  ::coapd_opt_table for `coapd --help-plugin`. A coapd plugin uses
 *  coapd_plugin.options instead. */
#define COAPD_OPTIONS_SYMBOL "coapd_options_entry"
/** Mark that table visible in a library built with hidden visibility. */
#define COAPD_OPTIONS_EXPORT __attribute__((visibility("default")))

/* offsetof(st, m), and a compile error unless member m has type T: the
 * parser writes a T there, so the tag and the member must agree. */
#define COAPD_OPT_AT_(st, m, T)                                              \
  (offsetof(st, m) + 0 * sizeof(_Generic(((st *)0)->m, T : 1)))

/** `type` and `offset` for an option stored in member @p m of struct @p st. */
#define COAPD_OPT_STRING_IN(st, m)                                           \
  .type = COAPD_OPT_STRING, .offset = COAPD_OPT_AT_(st, m, const char *)
#define COAPD_OPT_PATH_IN(st, m)                                             \
  .type = COAPD_OPT_PATH, .offset = COAPD_OPT_AT_(st, m, const char *)
#define COAPD_OPT_BOOL_IN(st, m)                                             \
  .type = COAPD_OPT_BOOL, .offset = COAPD_OPT_AT_(st, m, bool)
#define COAPD_OPT_INT_IN(st, m)                                              \
  .type = COAPD_OPT_INT, .offset = COAPD_OPT_AT_(st, m, long long)
#define COAPD_OPT_ENUM_IN(st, m)                                             \
  .type = COAPD_OPT_ENUM, .offset = COAPD_OPT_AT_(st, m, int)
#define COAPD_OPT_LIST_IN(st, m)                                             \
  .type = COAPD_OPT_LIST, .offset = COAPD_OPT_AT_(st, m, const char *)

#ifdef __cplusplus
}
#endif

#endif /* COAPD_OPTIONS_H */
