/* Fuzz the option-table parser (common/opts.c). The input is read as
 * `KEY VALUE` lines, as coapd hands plugin_opt_ lines to a plugin, against
 * a table with every type; each line's VALUE is also parsed as every entry
 * and walked as a list, and KEY goes through the did-you-mean search. The
 * first byte picks coapd style (line numbers) or Mosquitto style (none).
 * Invariants: every failure has a message that starts with the file name
 * and is one line; a success stores values that obey the table. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/opts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LINES_MAX 64u
#define FILE_NAME "fuzz.conf"

typedef struct vals {
  const char *s, *path, *list;
  bool b;
  long long i, wide;
  int e;
} vals;

static int no_dots(const char *v, char *why, size_t why_len) {
  if (strstr(v, "..")) {
    snprintf(why, why_len, "no '..'");
    return -1;
  }
  return 0;
}

static const char *const words[] = {"off", "verify", "require", NULL};

static const coapd_opt entries[] = {
    {.name = "str", COAPD_OPT_STRING_IN(vals, s), .max_len = 32,
     .check = no_dots, .def = "x"},
    {.name = "path", COAPD_OPT_PATH_IN(vals, path), .flags = COAPD_OPT_REQUIRED},
    {.name = "flag", COAPD_OPT_BOOL_IN(vals, b), .def = "off"},
    {.name = "num", COAPD_OPT_INT_IN(vals, i), .min = -5, .max = 86400,
     .def = "0"},
    {.name = "wide", COAPD_OPT_INT_IN(vals, wide), .min = -9223372036854775807LL - 1,
     .max = 9223372036854775807LL},
    {.name = "mode", COAPD_OPT_ENUM_IN(vals, e), .words = words,
     .def = "verify"},
    {.name = "items", COAPD_OPT_LIST_IN(vals, list), .min = 0, .max = 4,
     .item_max = 8, .max_len = 64},
};

static const coapd_opt_table table = COAPD_OPT_TABLE("fuzz", entries);

static void check_msg(const char *msg, const char *file) {
  if (strncmp(msg, file, strlen(file)) != 0)
    __builtin_trap();
  for (const char *c = msg; *c; c++)
    if ((unsigned char)*c < 0x20 || *c == 0x7f)
      __builtin_trap();
}

static void check_vals(const vals *v) {
  if (!v->s || strlen(v->s) > 32 || strstr(v->s, "..") || !v->path ||
      !v->path[0] || v->i < -5 || v->i > 86400 || v->e < 0 || v->e > 2)
    __builtin_trap();
  if (v->list) {
    est_opts_list it;
    const char *item;
    size_t len, n = 0;
    est_opts_list_begin(&it, v->list);
    while (est_opts_list_next(&it, &item, &len))
      if (len > 8 || (len && ++n > 4))
        __builtin_trap();
  }
}

/* Every entry's parser on one value; the walk of it as a list. */
static void each_entry(const char *value) {
  for (size_t i = 0; i < table.count; i++) {
    est_optval v;
    char problem[EST_OPTS_ERR_MAX];
    if (est_opts_value(est_opts_entry(&table, i), "p_", value, &v, problem,
                       sizeof problem) != EST_OK &&
        strncmp(problem, "bad value '", 11) != 0)
      __builtin_trap();
  }
  est_opts_list it;
  const char *item;
  size_t len, total = 0;
  est_opts_list_begin(&it, value);
  while (est_opts_list_next(&it, &item, &len))
    total += len;
  if (total > strlen(value))
    __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  est_opts o;
  vals v;
  bool lines = size == 0 || data[0] & 1;
  const char *file = lines ? FILE_NAME : "mosquitto.conf";
  /* Text with a NUL at the end; embedded NULs end a line early. */
  char *text = malloc(size + 1);
  if (!text)
    return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  memset(&v, 0, sizeof v);
  if (est_opts_begin(&o, &table, &v, "plugin_opt_") != EST_OK)
    __builtin_trap();

  est_err rc = EST_OK;
  char *s = size ? text + 1 : text;
  unsigned n = 0;
  while (*s && n < LINES_MAX && rc == EST_OK) {
    char *nl = strchr(s, '\n');
    if (nl)
      *nl = '\0';
    char *sp = strchr(s, ' ');
    const char *key = s, *value = "";
    if (sp) {
      *sp = '\0';
      value = sp + 1;
    }
    n++;
    each_entry(value);
    (void)est_opts_suggest(key, (const char *const[]){"str", "path", "mode"},
                           3);
    rc = est_opts_set(&o, key, value, file, lines ? n : 0);
    if (rc != EST_OK)
      check_msg(est_opts_error(&o), file);
    if (!nl)
      break;
    s = nl + 1;
  }
  if (rc == EST_OK) {
    rc = est_opts_end(&o, file, lines ? 1 : 0);
    if (rc == EST_OK)
      check_vals(&v);
    else if (rc == EST_ERR_CONFIG)
      check_msg(est_opts_error(&o), file);
    else
      __builtin_trap(); /* defaults always parse */
  }
  free(text);
  return 0;
}
