/**
 * @file opts.h
 * @brief The one parser of option tables (include/coapd/options.h).
 *
 * coapd (checking plugin_opt_ lines before a plugin's init), est_coaps.so
 * and mosquitto_est.so all parse options through this, so they refuse an
 * unknown, repeated or bad option with the same text:
 *
 *     F:L: unknown option 'plugin_opt_rot'; did you mean 'plugin_opt_root'?
 *     F:L: duplicate 'plugin_opt_root' (first set on line 7)
 *     F:L: bad value 'maybe' for plugin_opt_keygen (on|off)
 *     F:L: bad value '0' for plugin_opt_cert_days (integer from 1 to 36500)
 *     F:L: missing required option 'plugin_opt_ca_cert'
 *
 * F:L is FILE:LINE. A LINE of 0 means the reader has no line numbers
 * (Mosquitto): the text then starts with `FILE: `. Every input is capped:
 * names at EST_OPTS_NAME_MAX, values at the entry's max_len or
 * EST_OPTS_VALUE_MAX, tables at EST_OPTS_MAX entries, and a message shows
 * at most EST_OPTS_ECHO_MAX bytes of a value, control characters as '?'.
 *
 * Typical use:
 *
 *     est_opts st;
 *     est_err rc = est_opts_begin(&st, &table, &my_values, "plugin_opt_");
 *     for (each KEY VALUE at FILE:LINE)
 *       if (rc == EST_OK) rc = est_opts_set(&st, key, value, file, line);
 *     if (rc == EST_OK) rc = est_opts_end(&st, file, plugin_line);
 *     if (rc != EST_OK) log("%s", est_opts_error(&st));
 */
#ifndef EST_COMMON_OPTS_H
#define EST_COMMON_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "coapd/options.h"
#include "common/est_err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EST_OPTS_MAX 64u          /**< entries in one table */
#define EST_OPTS_NAME_MAX 64u     /**< bytes in an option name */
#define EST_OPTS_VALUE_MAX 16384u /**< bytes in a value (or the entry's cap) */
#define EST_OPTS_WORDS_MAX 32u    /**< words of one ENUM */
#define EST_OPTS_ERR_MAX 512u     /**< the error text, with its NUL */
#define EST_OPTS_ECHO_MAX 80u     /**< bytes of a bad value a message shows */

/** One parse run over one table. Plain data; no free needed. */
typedef struct est_opts {
  const coapd_opt_table *table;
  void *base;         /**< where values go; NULL: check only */
  const char *prefix; /**< written before names, e.g. "plugin_opt_" */
  bool set[EST_OPTS_MAX];
  unsigned line[EST_OPTS_MAX]; /**< the line that set each entry (0: unknown) */
  char err[EST_OPTS_ERR_MAX];
} est_opts;

/** One parsed value; which member holds it depends on the entry's type. */
typedef struct est_optval {
  const char *str; /**< STRING, PATH, LIST: the value itself (borrowed) */
  long long num;   /**< INT */
  int word;        /**< ENUM: index into words */
  bool on;         /**< BOOL */
} est_optval;

/**
 * Start a run over @p table (checked with est_opts_table_check()). Values
 * are stored into @p base at each entry's offset; with @p base NULL nothing
 * is stored (coapd checks a plugin's lines this way). @p prefix (may be
 * NULL) is put before every name in messages. EST_ERR_INVALID for a bad
 * table, with the reason in est_opts_error().
 */
est_err est_opts_begin(est_opts *o, const coapd_opt_table *table, void *base,
                       const char *prefix) EST_MUST_CHECK;

/**
 * Parse one `KEY VALUE` given at @p file : @p line (0: no line numbers).
 * The strings are borrowed: STRING, PATH and LIST values are stored as the
 * pointer @p value, so it must outlive every use of the stored value.
 * EST_ERR_CONFIG for an unknown key (with a did-you-mean hint for a close
 * name), a repeated key, or a bad value (with the allowed words, the range
 * or the entry's own reason).
 */
est_err est_opts_set(est_opts *o, const char *key, const char *value,
                     const char *file, unsigned line) EST_MUST_CHECK;

/**
 * Finish: EST_ERR_CONFIG if a required option was not given (reported at
 * @p file : @p line, the line that loaded the plugin); otherwise store the
 * default of every entry not given that has one.
 */
est_err est_opts_end(est_opts *o, const char *file,
                     unsigned line) EST_MUST_CHECK;

/** The text of the last failure, "" if none. Valid as long as @p o. */
const char *est_opts_error(const est_opts *o);

/** True if the entry named @p name was given (not merely defaulted). */
bool est_opts_given(const est_opts *o, const char *name);

/**
 * Check a table someone else built (a plugin's): sizes, entry count, names
 * (valid, unique), types, ranges, words, and that every default parses.
 * EST_OK, or EST_ERR_INVALID with the reason in @p err.
 */
est_err est_opts_table_check(const coapd_opt_table *table, char *err,
                             size_t errlen) EST_MUST_CHECK;

/** Entry @p i of @p table (entries are entry_size bytes apart), or NULL. */
const coapd_opt *est_opts_entry(const coapd_opt_table *table, size_t i);

/**
 * Print @p table as help, one line per option under a header:
 * `NAME TYPE DEFAULT DESCRIPTION`, names with @p prefix. TYPE is one word:
 * `string`, `path`, `on|off`, `int(MIN..MAX)`, `w1|w2|...` or
 * `list(MIN..MAX)`; DEFAULT is the default, `(required)` or `-`.
 * EST_ERR_IO if writing fails.
 */
est_err est_opts_help(const coapd_opt_table *table, const char *prefix,
                      FILE *out) EST_MUST_CHECK;

/**
 * Parse @p value (NUL-terminated) as entry @p e: the type, the caps and the
 * entry's check. On failure write `bad value 'V' for NAME (WHY)` (no
 * `FILE:LINE`) into @p problem. This is what est_opts_set() runs; coapd's
 * own config parser uses it for its numbers and words, so its messages
 * match the plugins'.
 */
est_err est_opts_value(const coapd_opt *e, const char *prefix,
                       const char *value, est_optval *out, char *problem,
                       size_t problem_len) EST_MUST_CHECK;

/**
 * The name among @p names (@p n of them) closest to @p key by edit distance
 * (ignoring case; a swap of two neighbours counts as one edit), if it is
 * close enough to be a likely typo, else NULL.
 */
const char *est_opts_suggest(const char *key, const char *const *names,
                             size_t n);

/** Walk the items of a LIST value: blanks around items trimmed. */
typedef struct est_opts_list {
  const char *next;
  bool done;
} est_opts_list;

/** Start walking @p value (NULL or "" has no items). */
void est_opts_list_begin(est_opts_list *it, const char *value);

/**
 * The next item: sets *item and *len (not NUL-terminated; *len may be 0 for
 * an empty item such as the middle of "a,,b", which a LIST does not count).
 * Returns false when there are no more.
 */
bool est_opts_list_next(est_opts_list *it, const char **item, size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* EST_COMMON_OPTS_H */
