/* The metrics registry and its Prometheus text rendering, format 0.0.4
 * (metrics.h, docs/metrics.md). Plain C: no libcoap, no libmicrohttpd. */
#include "metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The host's own name prefixes; plugins may not use them. */
static const char *const reserved[] = {"coapd_", "process_"};

typedef struct series {
  char *values[COAPD_METRIC_LABELS_MAX]; /* into one malloc block, vblock */
  char *vblock;
  double value;  /* counter, gauge */
  double sum;    /* histogram */
  uint64_t count;
  uint64_t *bucket; /* nbuckets + 1 (the +Inf one), not cumulative */
} series;

struct coapd_metric {
  coapd_metrics *reg;
  const void *owner;
  coapd_metric_type type;
  char name[COAPD_METRIC_NAME_MAX + 1];
  char help[COAPD_METRIC_HELP_MAX + 1];
  size_t nlabels;
  char label[COAPD_METRIC_LABELS_MAX][COAPD_METRIC_NAME_MAX + 1];
  size_t nbuckets;
  double bound[COAPD_METRIC_BUCKETS_MAX];
  series *s;
  size_t ns, cap;
  int warned; /* the series cap was logged */
};

typedef struct hook {
  const void *owner;
  coapd_collect_cb collect;
  coapd_health_cb health;
  void *arg;
  char name[COAPD_METRIC_NAME_MAX + 1];
} hook;

struct coapd_metrics {
  void (*warn)(const char *line);
  coapd_metric *m[COAPD_METRICS_MAX];
  size_t nm;
  hook collect[COAPD_METRICS_HOOKS_MAX];
  size_t ncollect;
  hook health[COAPD_METRICS_HOOKS_MAX];
  size_t nhealth;
  coapd_metric *dropped; /* coapd_metric_series_dropped_total */
};

__attribute__((format(printf, 2, 3))) static void warnf(coapd_metrics *r, const char *fmt, ...) {
  char line[512];
  va_list ap;
  if (!r->warn)
    return;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  r->warn(line);
}

/* ---- checks ------------------------------------------------------------- */

static int is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* [a-zA-Z_:][a-zA-Z0-9_:]* for metric names, without ':' for labels. */
static int name_ok(const char *s, int colon) {
  size_t n = s ? strnlen(s, COAPD_METRIC_NAME_MAX + 1) : 0;
  if (n == 0 || n > COAPD_METRIC_NAME_MAX)
    return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!(is_alpha(c) || (colon && c == ':') || (i > 0 && is_digit(c))))
      return 0;
  }
  return 1;
}

/* Well-formed UTF-8 of at most @p max bytes (the format's label values and
 * help are UTF-8); sets *len. */
static int utf8_ok(const char *s, size_t max, size_t *len) {
  size_t n = s ? strnlen(s, max + 1) : 0;
  if (!s || n > max)
    return 0;
  for (size_t i = 0; i < n;) {
    unsigned char c = (unsigned char)s[i];
    size_t k = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2
               : (c & 0xf8) == 0xf0                ? 3
                                                   : 4;
    if (k == 4 || (k == 1 && c < 0xc2) || c > 0xf4 || i + k >= n)
      return 0;
    for (size_t j = 1; j <= k; j++)
      if (((unsigned char)s[i + j] & 0xc0) != 0x80)
        return 0;
    /* No overlong forms, no surrogates, nothing past U+10FFFF. */
    unsigned char c1 = k ? (unsigned char)s[i + 1] : 0;
    if ((c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 >= 0xa0) || (c == 0xf0 && c1 < 0x90) ||
        (c == 0xf4 && c1 >= 0x90))
      return 0;
    i += k + 1;
  }
  *len = n;
  return 1;
}

static est_err check_desc(const void *owner, const coapd_metric_desc *d, char *why,
                          size_t whylen) {
  size_t hl = 0;
  if (!d || !name_ok(d->name, 1)) {
    snprintf(why, whylen, "bad metric name '%.*s'", COAPD_METRIC_NAME_MAX,
             d && d->name ? d->name : "");
    return EST_ERR_INVALID;
  }
  for (size_t i = 0; owner && i < sizeof reserved / sizeof reserved[0]; i++) {
    if (strncmp(d->name, reserved[i], strlen(reserved[i])) == 0) {
      snprintf(why, whylen, "metric '%s': the prefix '%s' is coapd's own", d->name,
               reserved[i]);
      return EST_ERR_INVALID;
    }
  }
  if (!d->help || !utf8_ok(d->help, COAPD_METRIC_HELP_MAX, &hl) || memchr(d->help, '\n', hl)) {
    snprintf(why, whylen, "metric '%s': help missing, over %u bytes or not one UTF-8 line",
             d->name, COAPD_METRIC_HELP_MAX);
    return EST_ERR_INVALID;
  }
  if (d->type != COAPD_METRIC_COUNTER && d->type != COAPD_METRIC_GAUGE &&
      d->type != COAPD_METRIC_HISTOGRAM) {
    snprintf(why, whylen, "metric '%s': unknown type %d", d->name, (int)d->type);
    return EST_ERR_INVALID;
  }
  if (d->nlabels > COAPD_METRIC_LABELS_MAX || (d->nlabels && !d->labels)) {
    snprintf(why, whylen, "metric '%s': more than %u labels", d->name, COAPD_METRIC_LABELS_MAX);
    return EST_ERR_INVALID;
  }
  for (size_t i = 0; i < d->nlabels; i++) {
    const char *l = d->labels[i];
    int bad = !name_ok(l, 0) || strncmp(l, "__", 2) == 0 ||
              (d->type == COAPD_METRIC_HISTOGRAM && strcmp(l, "le") == 0);
    for (size_t j = 0; !bad && j < i; j++)
      bad = strcmp(l, d->labels[j]) == 0;
    if (bad) {
      snprintf(why, whylen, "metric '%s': bad or repeated label name '%.*s'", d->name,
               COAPD_METRIC_NAME_MAX, l ? l : "");
      return EST_ERR_INVALID;
    }
  }
  if (d->type == COAPD_METRIC_HISTOGRAM) {
    int bad = d->nbuckets == 0 || d->nbuckets > COAPD_METRIC_BUCKETS_MAX || !d->buckets;
    for (size_t i = 0; !bad && i < d->nbuckets; i++)
      bad = !isfinite(d->buckets[i]) || (i > 0 && !(d->buckets[i] > d->buckets[i - 1]));
    if (bad) {
      snprintf(why, whylen, "metric '%s': 1..%u finite, increasing bucket bounds", d->name,
               COAPD_METRIC_BUCKETS_MAX);
      return EST_ERR_INVALID;
    }
  }
  return EST_OK;
}

/* ---- the registry ----------------------------------------------------- */

static void metric_free(coapd_metric *m) {
  if (!m)
    return;
  for (size_t i = 0; i < m->ns; i++) {
    free(m->s[i].vblock);
    free(m->s[i].bucket);
  }
  free(m->s);
  free(m);
}

est_err coapd_metrics_new(void (*warn)(const char *line), coapd_metrics **out) {
  char why[256];
  coapd_metrics *r = calloc(1, sizeof *r);
  *out = NULL;
  if (!r)
    return EST_ERR_NOMEM;
  r->warn = warn;
  static const coapd_metric_desc dropped = {
      .name = "coapd_metric_series_dropped_total",
      .help = "Metric updates dropped: a new series past the per-metric cap, or a bad label value.",
      .type = COAPD_METRIC_COUNTER};
  est_err rc = coapd_metrics_register(r, NULL, &dropped, &r->dropped, why, sizeof why);
  if (rc != EST_OK) {
    coapd_metrics_free(r);
    return rc;
  }
  *out = r;
  return EST_OK;
}

void coapd_metrics_free(coapd_metrics *r) {
  if (!r)
    return;
  for (size_t i = 0; i < r->nm; i++)
    metric_free(r->m[i]);
  free(r);
}

static series *series_new(coapd_metric *m, const char *const *values, const size_t *lens);

est_err coapd_metrics_register(coapd_metrics *r, const void *owner, const coapd_metric_desc *d,
                               coapd_metric **out, char *why, size_t whylen) {
  char dummy[8];
  if (!why || !whylen) {
    why = dummy;
    whylen = sizeof dummy;
  }
  why[0] = '\0';
  if (out)
    *out = NULL;
  if (!r || !out)
    return EST_ERR_INVALID;
  est_err rc = check_desc(owner, d, why, whylen);
  if (rc != EST_OK)
    return rc;
  for (size_t i = 0; i < r->nm; i++) {
    if (strcmp(r->m[i]->name, d->name) == 0) {
      snprintf(why, whylen, "metric '%s' is registered already", d->name);
      return EST_ERR_EXISTS;
    }
  }
  if (r->nm >= COAPD_METRICS_MAX) {
    snprintf(why, whylen, "metric '%s': more than %u metrics", d->name, COAPD_METRICS_MAX);
    return EST_ERR_TOO_LARGE;
  }
  coapd_metric *m = calloc(1, sizeof *m);
  if (!m)
    return EST_ERR_NOMEM;
  m->reg = r;
  m->owner = owner;
  m->type = d->type;
  snprintf(m->name, sizeof m->name, "%s", d->name);
  snprintf(m->help, sizeof m->help, "%s", d->help);
  m->nlabels = d->nlabels;
  for (size_t i = 0; i < d->nlabels; i++)
    snprintf(m->label[i], sizeof m->label[i], "%s", d->labels[i]);
  if (d->type == COAPD_METRIC_HISTOGRAM) {
    m->nbuckets = d->nbuckets;
    memcpy(m->bound, d->buckets, d->nbuckets * sizeof d->buckets[0]);
  }
  /* Without labels the one series exists from the start: it reads 0. */
  if (m->nlabels == 0 && !series_new(m, NULL, NULL)) {
    metric_free(m);
    return EST_ERR_NOMEM;
  }
  r->m[r->nm++] = m;
  *out = m;
  return EST_OK;
}

static est_err hook_add(hook *tab, size_t *n, const void *owner, const char *name,
                        coapd_collect_cb collect, coapd_health_cb health, void *arg) {
  if (*n >= COAPD_METRICS_HOOKS_MAX)
    return EST_ERR_TOO_LARGE;
  hook *h = &tab[(*n)++];
  memset(h, 0, sizeof *h);
  h->owner = owner;
  h->collect = collect;
  h->health = health;
  h->arg = arg;
  snprintf(h->name, sizeof h->name, "%s", name ? name : "coapd");
  return EST_OK;
}

est_err coapd_metrics_collect_add(coapd_metrics *r, const void *owner, coapd_collect_cb cb,
                                  void *arg) {
  if (!r || !cb)
    return EST_ERR_INVALID;
  return hook_add(r->collect, &r->ncollect, owner, NULL, cb, NULL, arg);
}

est_err coapd_metrics_health_add(coapd_metrics *r, const void *owner, const char *name,
                                 coapd_health_cb cb, void *arg) {
  if (!r || !cb)
    return EST_ERR_INVALID;
  return hook_add(r->health, &r->nhealth, owner, name, NULL, cb, arg);
}

static void hooks_drop(hook *tab, size_t *n, const void *owner) {
  size_t k = 0;
  for (size_t i = 0; i < *n; i++)
    if (tab[i].owner != owner)
      tab[k++] = tab[i];
  *n = k;
}

void coapd_metrics_drop_owner(coapd_metrics *r, const void *owner) {
  if (!r || !owner)
    return;
  size_t k = 0;
  for (size_t i = 0; i < r->nm; i++) {
    if (r->m[i]->owner == owner)
      metric_free(r->m[i]);
    else
      r->m[k++] = r->m[i];
  }
  r->nm = k;
  hooks_drop(r->collect, &r->ncollect, owner);
  hooks_drop(r->health, &r->nhealth, owner);
}

/* ---- series ------------------------------------------------------------- */

static series *series_new(coapd_metric *m, const char *const *values, const size_t *lens) {
  size_t total = 0;
  for (size_t i = 0; i < m->nlabels; i++)
    total += lens[i] + 1;
  if (m->ns == m->cap) {
    size_t cap = m->cap ? m->cap * 2 : 4;
    if (cap > COAPD_METRIC_SERIES_MAX)
      cap = COAPD_METRIC_SERIES_MAX;
    series *s = realloc(m->s, cap * sizeof *s);
    if (!s)
      return NULL;
    m->s = s;
    m->cap = cap;
  }
  series *s = &m->s[m->ns];
  memset(s, 0, sizeof *s);
  s->vblock = malloc(total ? total : 1);
  if (!s->vblock)
    return NULL;
  if (m->type == COAPD_METRIC_HISTOGRAM) {
    s->bucket = calloc(m->nbuckets + 1, sizeof *s->bucket);
    if (!s->bucket) {
      free(s->vblock);
      return NULL;
    }
  }
  char *p = s->vblock;
  for (size_t i = 0; i < m->nlabels; i++) {
    memcpy(p, values[i], lens[i] + 1);
    s->values[i] = p;
    p += lens[i] + 1;
  }
  m->ns++;
  return s;
}

static void drop(coapd_metric *m, const char *what) {
  coapd_metrics *r = m->reg;
  if (r->dropped && r->dropped->ns)
    r->dropped->s[0].value += 1;
  if (!m->warned) {
    m->warned = 1;
    warnf(r, "metric %s: %s; dropped and counted in coapd_metric_series_dropped_total "
             "(said once)", m->name, what);
  }
}

/* The series @p values names, made on first use; NULL when dropped. */
static series *find(coapd_metric *m, const char *const *values) {
  size_t lens[COAPD_METRIC_LABELS_MAX];
  if (m->nlabels == 0)
    return m->ns ? &m->s[0] : NULL;
  if (!values) {
    drop(m, "label values missing");
    return NULL;
  }
  for (size_t i = 0; i < m->nlabels; i++) {
    if (!utf8_ok(values[i], COAPD_METRIC_VALUE_MAX, &lens[i])) {
      drop(m, "a label value too long or not UTF-8");
      return NULL;
    }
  }
  for (size_t i = 0; i < m->ns; i++) {
    size_t j = 0;
    while (j < m->nlabels && strcmp(m->s[i].values[j], values[j]) == 0)
      j++;
    if (j == m->nlabels)
      return &m->s[i];
  }
  if (m->ns >= COAPD_METRIC_SERIES_MAX) {
    drop(m, "the series cap (COAPD_METRIC_SERIES_MAX) is reached");
    return NULL;
  }
  series *s = series_new(m, values, lens);
  if (!s)
    drop(m, "out of memory");
  return s;
}

void coapd_metric_add(coapd_metric *m, const char *const *label_values, double v) {
  if (!m || !isfinite(v) || m->type == COAPD_METRIC_HISTOGRAM ||
      (m->type == COAPD_METRIC_COUNTER && v < 0))
    return;
  series *s = find(m, label_values);
  if (s)
    s->value += v;
}

void coapd_metric_set(coapd_metric *m, const char *const *label_values, double v) {
  if (!m || m->type != COAPD_METRIC_GAUGE || isnan(v))
    return;
  series *s = find(m, label_values);
  if (s)
    s->value = v;
}

void coapd_metric_observe(coapd_metric *m, const char *const *label_values, double v) {
  if (!m || m->type != COAPD_METRIC_HISTOGRAM || isnan(v))
    return;
  series *s = find(m, label_values);
  if (!s)
    return;
  size_t b = 0;
  while (b < m->nbuckets && v > m->bound[b])
    b++;
  s->bucket[b]++;
  s->count++;
  s->sum += v;
}

/* ---- rendering ---------------------------------------------------------- */

typedef struct buf {
  char *p;
  size_t len, cap;
  est_err over; /* EST_ERR_TOO_LARGE past COAPD_METRICS_BODY_MAX, or NOMEM */
} buf;

static void put(buf *b, const char *s, size_t n) {
  if (b->over)
    return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n + 1)
      cap *= 2;
    if (cap > COAPD_METRICS_BODY_MAX + 1)
      cap = COAPD_METRICS_BODY_MAX + 1;
    if (b->len + n + 1 > cap) {
      b->over = EST_ERR_TOO_LARGE;
      return;
    }
    char *p = realloc(b->p, cap);
    if (!p) {
      b->over = EST_ERR_NOMEM;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

/* Escaping of the text format 0.0.4: in HELP, backslash and newline; in a
 * label value also the double quote. */
static void put_escaped(buf *b, const char *s, int quote) {
  const char *run = s;
  for (; *s; s++) {
    const char *e = *s == '\\' ? "\\\\" : *s == '\n' ? "\\n" : quote && *s == '"' ? "\\\"" : NULL;
    if (!e)
      continue;
    put(b, run, (size_t)(s - run));
    puts_(b, e);
    run = s + 1;
  }
  put(b, run, (size_t)(s - run));
}

/* The shortest of %.15g and %.17g that reads back as @p v; the format's
 * own words for the infinities and NaN. */
static void put_double(buf *b, double v) {
  char t[40];
  if (isnan(v))
    snprintf(t, sizeof t, "NaN");
  else if (isinf(v))
    snprintf(t, sizeof t, v > 0 ? "+Inf" : "-Inf");
  else {
    snprintf(t, sizeof t, "%.15g", v);
    if (strtod(t, NULL) != v)
      snprintf(t, sizeof t, "%.17g", v);
  }
  puts_(b, t);
}

static void put_u64(buf *b, uint64_t v) {
  char t[24];
  snprintf(t, sizeof t, "%llu", (unsigned long long)v);
  puts_(b, t);
}

/* `{a="x",b="y"[,le="..."]}`, or nothing when there are no labels. */
static void put_labels(buf *b, const coapd_metric *m, const series *s, const double *le) {
  if (m->nlabels == 0 && !le)
    return;
  puts_(b, "{");
  for (size_t i = 0; i < m->nlabels; i++) {
    if (i)
      puts_(b, ",");
    puts_(b, m->label[i]);
    puts_(b, "=\"");
    put_escaped(b, s->values[i], 1);
    puts_(b, "\"");
  }
  if (le) {
    puts_(b, m->nlabels ? ",le=\"" : "le=\"");
    put_double(b, *le);
    puts_(b, "\"");
  }
  puts_(b, "}");
}

static void render_metric(buf *b, const coapd_metric *m) {
  static const char *const types[] = {"counter", "gauge", "histogram"};
  puts_(b, "# HELP ");
  puts_(b, m->name);
  puts_(b, " ");
  put_escaped(b, m->help, 0);
  puts_(b, "\n# TYPE ");
  puts_(b, m->name);
  puts_(b, " ");
  puts_(b, types[m->type]);
  puts_(b, "\n");
  for (size_t i = 0; i < m->ns; i++) {
    const series *s = &m->s[i];
    if (m->type != COAPD_METRIC_HISTOGRAM) {
      puts_(b, m->name);
      put_labels(b, m, s, NULL);
      puts_(b, " ");
      put_double(b, s->value);
      puts_(b, "\n");
      continue;
    }
    uint64_t cum = 0;
    for (size_t k = 0; k <= m->nbuckets; k++) {
      const double inf = INFINITY;
      cum += s->bucket[k];
      puts_(b, m->name);
      puts_(b, "_bucket");
      put_labels(b, m, s, k < m->nbuckets ? &m->bound[k] : &inf);
      puts_(b, " ");
      put_u64(b, cum);
      puts_(b, "\n");
    }
    puts_(b, m->name);
    puts_(b, "_sum");
    put_labels(b, m, s, NULL);
    puts_(b, " ");
    put_double(b, s->sum);
    puts_(b, "\n");
    puts_(b, m->name);
    puts_(b, "_count");
    put_labels(b, m, s, NULL);
    puts_(b, " ");
    put_u64(b, s->count);
    puts_(b, "\n");
  }
}

est_err coapd_metrics_render(coapd_metrics *r, char **out, size_t *len) {
  buf b = {NULL, 0, 0, EST_OK};
  *out = NULL;
  *len = 0;
  if (!r)
    return EST_ERR_INVALID;
  /* A hook may not add or drop hooks; loop thread only. */
  for (size_t i = 0; i < r->ncollect; i++)
    r->collect[i].collect(r->collect[i].arg);
  puts_(&b, "");
  for (size_t i = 0; i < r->nm; i++)
    render_metric(&b, r->m[i]);
  if (b.over != EST_OK) {
    free(b.p);
    return b.over;
  }
  *out = b.p;
  *len = b.len;
  return EST_OK;
}

int coapd_metrics_healthy(coapd_metrics *r, char *why, size_t whylen) {
  char reason[256];
  if (why && whylen)
    why[0] = '\0';
  if (!r)
    return 1;
  for (size_t i = 0; i < r->nhealth; i++) {
    reason[0] = '\0';
    if (r->health[i].health(r->health[i].arg, reason, sizeof reason))
      continue;
    /* One line: a reason with a newline is cut there. */
    reason[strcspn(reason, "\r\n")] = '\0';
    if (why && whylen)
      snprintf(why, whylen, "%s: %s", r->health[i].name, reason[0] ? reason : "unhealthy");
    return 0;
  }
  return 1;
}
