/* The option-table parser (opts.h): one set of rules and one set of
 * messages for every reader of plugin options. */
#include "common/opts.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

/* Longest doc line a table may carry, and the most bytes an entry may be
 * apart in a table (a sanity cap on someone else's entry_size). */
#define DOC_MAX 240u
#define ENTRY_SIZE_MAX 4096u
/* Room for a joined word list ("a|b|c") or a reason. */
#define WHY_MAX 384u

#define NOT_FOUND ((size_t)-1)

const coapd_opt *est_opts_entry(const coapd_opt_table *t, size_t i) {
  if (!t || !t->entries || i >= t->count)
    return NULL;
  /* A newer publisher's entries are larger: step by its size, read ours. */
  return (const coapd_opt *)(const void *)((const char *)t->entries +
                                           i * t->entry_size);
}

/* ---- messages ------------------------------------------------------------ */

/* Write "FILE:LINE: " (or "FILE: " without a line) and the message. */
__attribute__((format(printf, 4, 5))) static est_err
fail(est_opts *o, const char *file, unsigned line, const char *fmt, ...) {
  char *err = o->err;
  size_t len = sizeof o->err;
  int n = line ? snprintf(err, len, "%s:%u: ", file ? file : "(config)", line)
               : snprintf(err, len, "%s: ", file ? file : "(config)");
  if (n >= 0 && (size_t)n < len) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, len - (size_t)n, fmt, ap);
    va_end(ap);
  }
  return EST_ERR_CONFIG;
}

/* A value as a message shows it: at most EST_OPTS_ECHO_MAX bytes, control
 * characters as '?' so a log line stays one line. */
static void echo(char *dst, size_t dstlen, const char *s) {
  size_t i = 0;
  for (; s && s[i] && i < EST_OPTS_ECHO_MAX && i + 1 < dstlen; i++) {
    unsigned char c = (unsigned char)s[i];
    dst[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
  }
  if (dstlen)
    dst[i < dstlen ? i : dstlen - 1] = '\0';
}

/* "a|b|c" for an ENUM (or on|off for a BOOL). */
static void join_words(const coapd_opt *e, char *buf, size_t len) {
  static const char *const on_off[] = {"on", "off", NULL};
  const char *const *w = e->type == COAPD_OPT_BOOL ? on_off : e->words;
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; w && w[i] && i < EST_OPTS_WORDS_MAX; i++) {
    int n = snprintf(buf + used, len - used, "%s%s", i ? "|" : "", w[i]);
    if (n < 0 || (size_t)n >= len - used)
      break; /* cut; the caps make this a table with very long words */
    used += (size_t)n;
  }
}

/* ---- value parsers ------------------------------------------------------- */

/* An optional '-' and 1 to 19 decimal digits; no '+', blanks or hex. */
static bool parse_ll(const char *s, size_t n, long long *out) {
  size_t i = 0;
  bool neg = n > 0 && s[0] == '-';
  unsigned long long v = 0;
  if (neg)
    i = 1;
  if (i == n || n - i > 19)
    return false;
  for (; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    v = v * 10u + (unsigned)(s[i] - '0'); /* 19 digits fit in 64 bits */
  }
  if (!neg && v > (unsigned long long)LLONG_MAX)
    return false;
  if (neg && v > (unsigned long long)LLONG_MAX + 1u)
    return false;
  if (neg)
    *out = v == (unsigned long long)LLONG_MAX + 1u ? LLONG_MIN : -(long long)v;
  else
    *out = (long long)v;
  return true;
}

static bool is_blank(char c) { return c == ' ' || c == '\t'; }

void est_opts_list_begin(est_opts_list *it, const char *value) {
  it->next = value;
  it->done = !value || !value[0];
}

bool est_opts_list_next(est_opts_list *it, const char **item, size_t *len) {
  if (it->done)
    return false;
  const char *s = it->next;
  const char *comma = strchr(s, ',');
  const char *end = comma ? comma : s + strlen(s);
  /* Move on before the caller may write into the item (it may cut it). */
  if (comma)
    it->next = comma + 1;
  else
    it->done = true;
  while (s < end && is_blank(*s))
    s++;
  while (end > s && is_blank(end[-1]))
    end--;
  *item = s;
  *len = (size_t)(end - s);
  return true;
}

static bool list_ok(const coapd_opt *e, const char *value, char *why,
                    size_t whylen) {
  est_opts_list it;
  const char *item;
  size_t len;
  long long count = 0;
  est_opts_list_begin(&it, value);
  while (est_opts_list_next(&it, &item, &len)) {
    if (len == 0)
      continue;
    if (e->item_max && len > e->item_max) {
      snprintf(why, whylen, "an item longer than %zu bytes", e->item_max);
      return false;
    }
    count++;
  }
  if (count > e->max) {
    snprintf(why, whylen, "more than %lld items", e->max);
    return false;
  }
  if (count < e->min) {
    snprintf(why, whylen, "fewer than %lld items", e->min);
    return false;
  }
  return true;
}

static bool word_index(const char *const *words, const char *s, int *out) {
  for (int i = 0; words && words[i] && i < (int)EST_OPTS_WORDS_MAX; i++) {
    if (strcmp(words[i], s) == 0) {
      *out = i;
      return true;
    }
  }
  return false;
}

static const char *name_or(const coapd_opt *e) {
  return e->name ? e->name : "?";
}

est_err est_opts_value(const coapd_opt *e, const char *prefix,
                       const char *value, est_optval *out, char *problem,
                       size_t problem_len) {
  char why[WHY_MAX] = "";
  est_optval v;
  bool ok = false;
  memset(&v, 0, sizeof v);
  if (problem && problem_len)
    problem[0] = '\0';
  if (!e || !value || !out)
    return EST_ERR_INVALID;
  size_t cap = e->max_len ? e->max_len : EST_OPTS_VALUE_MAX;
  if (cap > EST_OPTS_VALUE_MAX)
    cap = EST_OPTS_VALUE_MAX;
  size_t n = strnlen(value, cap + 1);

  if (n > cap) {
    snprintf(why, sizeof why, "longer than %zu bytes", cap);
  } else {
    switch (e->type) {
    case COAPD_OPT_STRING:
    case COAPD_OPT_PATH:
      ok = n > 0;
      if (!ok)
        snprintf(why, sizeof why, "empty");
      v.str = value;
      break;
    case COAPD_OPT_BOOL:
      ok = strcmp(value, "on") == 0 || strcmp(value, "off") == 0;
      v.on = strcmp(value, "on") == 0;
      if (!ok)
        join_words(e, why, sizeof why);
      break;
    case COAPD_OPT_INT:
      ok = parse_ll(value, n, &v.num) && v.num >= e->min && v.num <= e->max;
      if (!ok)
        snprintf(why, sizeof why, "integer from %lld to %lld", e->min, e->max);
      break;
    case COAPD_OPT_ENUM:
      ok = word_index(e->words, value, &v.word);
      if (!ok)
        join_words(e, why, sizeof why);
      break;
    case COAPD_OPT_LIST:
      ok = list_ok(e, value, why, sizeof why);
      v.str = value;
      break;
    case COAPD_OPT_TYPE__MAX:
      break;
    }
    if (!ok && !why[0])
      snprintf(why, sizeof why, "option type %d unknown", (int)e->type);
  }
  /* The entry's own test only sees values of the right type. */
  if (ok && e->check && e->check(value, why, sizeof why) != 0) {
    ok = false;
    if (!why[0])
      snprintf(why, sizeof why, "refused");
  }
  if (!ok) {
    char shown[EST_OPTS_ECHO_MAX + 1];
    echo(shown, sizeof shown, value);
    if (problem && problem_len)
      snprintf(problem, problem_len, "bad value '%s' for %s%s (%s)", shown,
               prefix ? prefix : "", name_or(e), why);
    return EST_ERR_CONFIG;
  }
  *out = v;
  return EST_OK;
}

/* ---- did you mean -------------------------------------------------------- */

static unsigned char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a')
                                : (unsigned char)c;
}

/* Optimal string alignment distance (Levenshtein plus adjacent swaps),
 * case-insensitive. Both lengths are at most EST_OPTS_NAME_MAX. */
static unsigned distance(const char *a, size_t an, const char *b, size_t bn) {
  unsigned char d[EST_OPTS_NAME_MAX + 1][EST_OPTS_NAME_MAX + 1];
  for (size_t i = 0; i <= an; i++)
    d[i][0] = (unsigned char)i;
  for (size_t j = 0; j <= bn; j++)
    d[0][j] = (unsigned char)j;
  for (size_t i = 1; i <= an; i++) {
    for (size_t j = 1; j <= bn; j++) {
      unsigned cost = lower(a[i - 1]) != lower(b[j - 1]);
      unsigned best = d[i - 1][j] + 1u;
      if (d[i][j - 1] + 1u < best)
        best = d[i][j - 1] + 1u;
      if (d[i - 1][j - 1] + cost < best)
        best = d[i - 1][j - 1] + cost;
      if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) &&
          lower(a[i - 2]) == lower(b[j - 1]) && d[i - 2][j - 2] + 1u < best)
        best = d[i - 2][j - 2] + 1u;
      d[i][j] = (unsigned char)best;
    }
  }
  return d[an][bn];
}

const char *est_opts_suggest(const char *key, const char *const *names,
                             size_t n) {
  size_t klen = key ? strnlen(key, EST_OPTS_NAME_MAX + 1) : 0;
  const char *best = NULL;
  unsigned best_d = UINT_MAX;
  if (klen == 0 || klen > EST_OPTS_NAME_MAX || !names)
    return NULL;
  /* Short names allow fewer edits, or everything would look like a typo. */
  unsigned limit = klen < 5 ? 1u : klen < 10 ? 2u : 3u;
  for (size_t i = 0; i < n; i++) {
    size_t nlen = names[i] ? strnlen(names[i], EST_OPTS_NAME_MAX + 1) : 0;
    if (nlen == 0 || nlen > EST_OPTS_NAME_MAX)
      continue;
    unsigned d = distance(key, klen, names[i], nlen);
    if (d <= limit && d < nlen && d < best_d) {
      best = names[i];
      best_d = d;
    }
  }
  return best;
}

/* ---- tables -------------------------------------------------------------- */

static bool name_ok(const char *s) {
  size_t n = s ? strnlen(s, EST_OPTS_NAME_MAX + 1) : 0;
  if (n == 0 || n > EST_OPTS_NAME_MAX)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
      return false;
  }
  return true;
}

static bool text_ok(const char *s, size_t max) {
  size_t n = strnlen(s, max + 1);
  if (n > max)
    return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
      return false;
  return true;
}

static bool word_ok(const char *w) {
  if (!text_ok(w, EST_OPTS_NAME_MAX) || !w[0])
    return false;
  for (const char *c = w; *c; c++)
    if (*c == '|' || is_blank(*c))
      return false;
  return true;
}

static est_err bad_table(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static est_err bad_table(char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return EST_ERR_INVALID;
}

static est_err entry_check(const coapd_opt_table *t, size_t i, char *err,
                           size_t errlen) {
  const coapd_opt *e = est_opts_entry(t, i);
  if (!name_ok(e->name))
    return bad_table(err, errlen,
                     "option %zu: bad name (1-%u of A-Z a-z 0-9 _ - .)", i,
                     EST_OPTS_NAME_MAX);
  for (size_t j = 0; j < i; j++)
    if (strcmp(est_opts_entry(t, j)->name, e->name) == 0)
      return bad_table(err, errlen, "option '%s' listed twice", e->name);
  if (e->type < COAPD_OPT_STRING || e->type >= COAPD_OPT_TYPE__MAX)
    return bad_table(err, errlen, "option '%s': type %d unknown", e->name,
                     (int)e->type);
  if (e->doc && !text_ok(e->doc, DOC_MAX))
    return bad_table(err, errlen,
                     "option '%s': doc longer than %u bytes or not one line",
                     e->name, DOC_MAX);
  if (e->max_len > EST_OPTS_VALUE_MAX)
    return bad_table(err, errlen, "option '%s': max_len over %u", e->name,
                     EST_OPTS_VALUE_MAX);
  if ((e->type == COAPD_OPT_INT || e->type == COAPD_OPT_LIST) &&
      e->min > e->max)
    return bad_table(err, errlen, "option '%s': min above max", e->name);
  if (e->type == COAPD_OPT_LIST && e->min < 0)
    return bad_table(err, errlen, "option '%s': negative item count", e->name);
  if (e->type == COAPD_OPT_ENUM) {
    size_t n = 0;
    while (e->words && n <= EST_OPTS_WORDS_MAX && e->words[n])
      n++;
    if (n == 0 || n > EST_OPTS_WORDS_MAX)
      return bad_table(err, errlen, "option '%s': needs 1-%u words", e->name,
                       EST_OPTS_WORDS_MAX);
    for (size_t a = 0; a < n; a++) {
      if (!word_ok(e->words[a]))
        return bad_table(err, errlen, "option '%s': bad word %zu", e->name, a);
      for (size_t b = 0; b < a; b++)
        if (strcmp(e->words[a], e->words[b]) == 0)
          return bad_table(err, errlen, "option '%s': word '%s' twice", e->name,
                           e->words[a]);
    }
  }
  if ((e->flags & COAPD_OPT_REQUIRED) && e->def)
    return bad_table(err, errlen, "option '%s': required but has a default",
                     e->name);
  if (e->def) {
    est_optval v;
    char problem[EST_OPTS_ERR_MAX];
    if (est_opts_value(e, "", e->def, &v, problem, sizeof problem) != EST_OK)
      return bad_table(err, errlen, "option '%s': default: %s", e->name,
                       problem);
  }
  return EST_OK;
}

est_err est_opts_table_check(const coapd_opt_table *t, char *err,
                             size_t errlen) {
  if (err && errlen)
    err[0] = '\0';
  if (!t)
    return bad_table(err, errlen, "no option table");
  if (t->size < COAPD_OPT_TABLE_SIZE_1_1)
    return bad_table(err, errlen, "option table size %u, need at least %zu",
                     (unsigned)t->size, (size_t)COAPD_OPT_TABLE_SIZE_1_1);
  if (t->entry_size < COAPD_OPT_SIZE_1_1 || t->entry_size > ENTRY_SIZE_MAX)
    return bad_table(err, errlen, "option entry size %u, need %zu to %u",
                     (unsigned)t->entry_size, (size_t)COAPD_OPT_SIZE_1_1,
                     ENTRY_SIZE_MAX);
  if (t->count > EST_OPTS_MAX)
    return bad_table(err, errlen, "more than %u options", EST_OPTS_MAX);
  if (t->count && !t->entries)
    return bad_table(err, errlen, "option table without entries");
  if (t->name && !text_ok(t->name, EST_OPTS_NAME_MAX))
    return bad_table(err, errlen,
                     "option table name longer than %u bytes or not one line",
                     EST_OPTS_NAME_MAX);
  for (size_t i = 0; i < t->count; i++) {
    est_err rc = entry_check(t, i, err, errlen);
    if (rc != EST_OK)
      return rc;
  }
  return EST_OK;
}

/* ---- one run ------------------------------------------------------------- */

static size_t find(const coapd_opt_table *t, const char *key) {
  for (size_t i = 0; i < t->count; i++)
    if (strcmp(est_opts_entry(t, i)->name, key) == 0)
      return i;
  return NOT_FOUND;
}

/* Copy the value to base + offset as the member's own type (memcpy: the
 * offset is only as aligned as the caller's struct makes it). */
static void store(est_opts *o, const coapd_opt *e, const est_optval *v) {
  if (!o->base)
    return;
  char *at = (char *)o->base + e->offset;
  switch (e->type) {
  case COAPD_OPT_STRING:
  case COAPD_OPT_PATH:
  case COAPD_OPT_LIST:
    memcpy(at, &v->str, sizeof v->str);
    break;
  case COAPD_OPT_BOOL:
    memcpy(at, &v->on, sizeof v->on);
    break;
  case COAPD_OPT_INT:
    memcpy(at, &v->num, sizeof v->num);
    break;
  case COAPD_OPT_ENUM:
    memcpy(at, &v->word, sizeof v->word);
    break;
  case COAPD_OPT_TYPE__MAX:
    break;
  }
}

est_err est_opts_begin(est_opts *o, const coapd_opt_table *table, void *base,
                       const char *prefix) {
  if (!o)
    return EST_ERR_INVALID;
  memset(o, 0, sizeof *o);
  o->base = base;
  o->prefix = prefix ? prefix : "";
  if (est_opts_table_check(table, o->err, sizeof o->err) != EST_OK)
    return EST_ERR_INVALID;
  o->table = table;
  return EST_OK;
}

est_err est_opts_set(est_opts *o, const char *key, const char *value,
                     const char *file, unsigned line) {
  if (!o || !o->table)
    return EST_ERR_INVALID;
  const coapd_opt_table *t = o->table;
  if (!key || !value)
    return fail(o, file, line, "option without a key or value");
  char shown[EST_OPTS_ECHO_MAX + 1];
  size_t klen = strnlen(key, EST_OPTS_NAME_MAX + 1);
  size_t i = klen <= EST_OPTS_NAME_MAX ? find(t, key) : NOT_FOUND;
  if (i == NOT_FOUND) {
    const char *names[EST_OPTS_MAX];
    for (size_t j = 0; j < t->count; j++)
      names[j] = est_opts_entry(t, j)->name;
    const char *near = est_opts_suggest(key, names, t->count);
    echo(shown, sizeof shown, key);
    if (near)
      return fail(o, file, line, "unknown option '%s%s'; did you mean '%s%s'?",
                  o->prefix, shown, o->prefix, near);
    return fail(o, file, line, "unknown option '%s%s'", o->prefix, shown);
  }
  const coapd_opt *e = est_opts_entry(t, i);
  if (o->set[i] && !(e->flags & COAPD_OPT_REPEATABLE)) {
    if (o->line[i] && line)
      return fail(o, file, line, "duplicate '%s%s' (first set on line %u)",
                  o->prefix, e->name, o->line[i]);
    return fail(o, file, line, "duplicate '%s%s'", o->prefix, e->name);
  }
  est_optval v;
  char problem[EST_OPTS_ERR_MAX];
  if (est_opts_value(e, o->prefix, value, &v, problem, sizeof problem) !=
      EST_OK)
    return fail(o, file, line, "%s", problem);
  store(o, e, &v);
  o->set[i] = true;
  o->line[i] = line;
  return EST_OK;
}

est_err est_opts_end(est_opts *o, const char *file, unsigned line) {
  if (!o || !o->table)
    return EST_ERR_INVALID;
  const coapd_opt_table *t = o->table;
  for (size_t i = 0; i < t->count; i++) {
    const coapd_opt *e = est_opts_entry(t, i);
    if (!o->set[i] && (e->flags & COAPD_OPT_REQUIRED))
      return fail(o, file, line, "missing required option '%s%s'", o->prefix,
                  e->name);
  }
  for (size_t i = 0; i < t->count; i++) {
    const coapd_opt *e = est_opts_entry(t, i);
    est_optval v;
    char problem[EST_OPTS_ERR_MAX];
    if (o->set[i] || !e->def)
      continue;
    /* est_opts_begin checked every default, so this cannot fail. */
    if (est_opts_value(e, o->prefix, e->def, &v, problem, sizeof problem) !=
        EST_OK) {
      fail(o, file, line, "default of '%s%s': %s", o->prefix, e->name, problem);
      return EST_ERR_INTERNAL;
    }
    store(o, e, &v);
  }
  return EST_OK;
}

const char *est_opts_error(const est_opts *o) { return o ? o->err : ""; }

bool est_opts_given(const est_opts *o, const char *name) {
  if (!o || !o->table || !name)
    return false;
  size_t i = find(o->table, name);
  return i != NOT_FOUND && o->set[i];
}

/* ---- help ---------------------------------------------------------------- */

static void type_base(const coapd_opt *e, char *buf, size_t len) {
  switch (e->type) {
  case COAPD_OPT_STRING:
    snprintf(buf, len, "string");
    return;
  case COAPD_OPT_PATH:
    snprintf(buf, len, "path");
    return;
  case COAPD_OPT_BOOL:
  case COAPD_OPT_ENUM:
    join_words(e, buf, len);
    return;
  case COAPD_OPT_INT:
    snprintf(buf, len, "int(%lld..%lld)", e->min, e->max);
    return;
  case COAPD_OPT_LIST:
    snprintf(buf, len, "list(%lld..%lld)", e->min, e->max);
    return;
  case COAPD_OPT_TYPE__MAX:
    break;
  }
  snprintf(buf, len, "?");
}

static void type_text(const coapd_opt *e, char *buf, size_t len) {
  type_base(e, buf, len);
  size_t n = strlen(buf);
  if ((e->flags & COAPD_OPT_REPEATABLE) && n < len)
    snprintf(buf + n, len - n, "(repeatable)");
}

static const char *default_text(const coapd_opt *e) {
  if (e->flags & COAPD_OPT_REQUIRED)
    return "(required)";
  return e->def ? e->def : "-";
}

est_err est_opts_help(const coapd_opt_table *t, const char *prefix, FILE *out) {
  char type[WHY_MAX];
  int wn = 4, wt = 4, wd = 7; /* "NAME", "TYPE", "DEFAULT" */
  if (!t || !out || est_opts_table_check(t, NULL, 0) != EST_OK)
    return EST_ERR_INVALID;
  if (!prefix)
    prefix = "";
  for (size_t i = 0; i < t->count; i++) {
    const coapd_opt *e = est_opts_entry(t, i);
    int n = (int)(strlen(prefix) + strlen(e->name));
    type_text(e, type, sizeof type);
    if (n > wn)
      wn = n;
    if ((int)strlen(type) > wt)
      wt = (int)strlen(type);
    if ((int)strnlen(default_text(e), EST_OPTS_VALUE_MAX) > wd)
      wd = (int)strnlen(default_text(e), EST_OPTS_VALUE_MAX);
  }
  if (fprintf(out, "%-*s  %-*s  %-*s  %s\n", wn, "NAME", wt, "TYPE", wd,
              "DEFAULT", "DESCRIPTION") < 0)
    return EST_ERR_IO;
  for (size_t i = 0; i < t->count; i++) {
    const coapd_opt *e = est_opts_entry(t, i);
    type_text(e, type, sizeof type);
    if (fprintf(out, "%s%-*s  %-*s  %-*s  %s\n", prefix,
                wn - (int)strlen(prefix), e->name, wt, type, wd,
                default_text(e), e->doc ? e->doc : "") < 0)
      return EST_ERR_IO;
  }
  return fflush(out) == 0 ? EST_OK : EST_ERR_IO;
}
