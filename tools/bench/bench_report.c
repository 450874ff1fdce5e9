/* est-bench's table: medians over runs, and the raw file behind
 * scripts/bench.sh's interleaved runs. */
#define _GNU_SOURCE
#include "bench_report.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "bench_stats.h"

#define RAW_TAG "est-bench-run-v1" /* first field of every raw line */
#define RAW_LINE_MAX 1024
#define RAW_LINES_MAX 100000u
#define CELL 16

void bench_report_header(FILE *out) {
  fprintf(out, "%-30s %4s %6s %4s %7s %6s %6s %6s %6s %6s %7s %4s %5s %7s %7s %5s\n",
          "scenario", "sess", "ops", "err", "ops/s", "p50ms", "p90ms", "p99ms", "hs-p50",
          "rq-p50", "srv-us", "sys", "busy", "srv-max", "cli-us", "other");
}

static void cell_ms(char *out, double us, bool have) {
  if (have)
    snprintf(out, CELL, "%.2f", us / 1000.0);
  else
    snprintf(out, CELL, "-");
}

/* A whole number, or a percentage, or "-". */
static void cell(char *out, double v, bool pct, bool have) {
  if (!have)
    snprintf(out, CELL, "-");
  else if (pct)
    snprintf(out, CELL, "%.0f%%", v);
  else
    snprintf(out, CELL, "%.0f", v);
}

void bench_report_row(FILE *out, const char *label, const bench_run_sum *runs, size_t n) {
  double rate[BENCH_REPORT_RUNS], p50[BENCH_REPORT_RUNS], p90[BENCH_REPORT_RUNS],
      p99[BENCH_REPORT_RUNS], hs[BENCH_REPORT_RUNS], rq[BENCH_REPORT_RUNS],
      srv[BENCH_REPORT_RUNS], sys[BENCH_REPORT_RUNS], busy[BENCH_REPORT_RUNS],
      cli[BENCH_REPORT_RUNS], other[BENCH_REPORT_RUNS];
  size_t asked = 0, errs = 0, nlat = 0, nhs = 0, nsrv = 0, nother = 0, ncli = 0;
  char c_p50[CELL], c_p90[CELL], c_p99[CELL], c_hs[CELL], c_rq[CELL], c_srv[CELL],
      c_sys[CELL], c_busy[CELL], c_max[CELL], c_cli[CELL], c_other[CELL];
  unsigned sessions = 0;

  if (n > BENCH_REPORT_RUNS)
    n = BENCH_REPORT_RUNS;
  for (size_t i = 0; i < n; i++) {
    const bench_run_sum *r = &runs[i];
    size_t tried = r->tried; /* failed operations cost the server too */
    sessions = r->sessions;
    asked += r->asked;
    errs += r->asked - (r->ok <= r->asked ? r->ok : r->asked);
    rate[i] = r->wall_s > 0 ? (double)r->ok / r->wall_s : 0.0;
    if (r->ok) {
      p50[nlat] = r->p50;
      p90[nlat] = r->p90;
      p99[nlat] = r->p99;
      rq[nlat++] = r->rq50;
      if (r->hs50 && !r->reuse)
        hs[nhs++] = r->hs50;
    }
    if (tried) {
      cli[ncli++] = r->cli_cpu_s * 1e6 / (double)tried;
      if (r->srv_cpu_s >= 0) {
        srv[nsrv] = r->srv_cpu_s * 1e6 / (double)tried;
        sys[nsrv] = r->srv_cpu_s > 0 ? 100.0 * r->srv_sys_s / r->srv_cpu_s : 0.0;
        busy[nsrv++] = r->wall_s > 0 ? 100.0 * r->srv_cpu_s / r->wall_s : 0.0;
      }
    }
    if (r->other_cpu_s >= 0 && r->mach_s > 0)
      other[nother++] = 100.0 * r->other_cpu_s / r->mach_s;
  }
  cell_ms(c_p50, bench_median(p50, nlat), nlat > 0);
  cell_ms(c_p90, bench_median(p90, nlat), nlat > 0);
  cell_ms(c_p99, bench_median(p99, nlat), nlat > 0);
  cell_ms(c_hs, bench_median(hs, nhs), nhs > 0);
  cell_ms(c_rq, bench_median(rq, nlat), nlat > 0);
  double su = bench_median(srv, nsrv);
  cell(c_srv, su, false, nsrv > 0);
  cell(c_sys, bench_median(sys, nsrv), true, nsrv > 0);
  cell(c_busy, bench_median(busy, nsrv), true, nsrv > 0);
  cell(c_max, su > 0 ? 1e6 / su : 0.0, false, nsrv > 0 && su > 0);
  cell(c_cli, bench_median(cli, ncli), false, ncli > 0);
  cell(c_other, bench_median(other, nother), true, nother > 0);
  fprintf(out, "%-30.30s %4u %6zu %4zu %7.1f %6s %6s %6s %6s %6s %7s %4s %5s %7s %7s %5s\n",
          label, sessions, asked, errs, bench_median(rate, n), c_p50, c_p90, c_p99, c_hs,
          c_rq, c_srv, c_sys, c_busy, c_max, c_cli, c_other);
  fflush(out);
}

/* The raw line: the tag, the label, then these fields in this order. */
enum raw_field {
  RF_SESSIONS = 0,
  RF_REUSE,
  RF_ASKED,
  RF_TRIED,
  RF_OK,
  RF_WALL,
  RF_SRV,
  RF_SYS,
  RF_CLI,
  RF_OTHER,
  RF_MACH,
  RF_P50,
  RF_P90,
  RF_P99,
  RF_HS50,
  RF_RQ50,
  RF__MAX
};

bool bench_raw_append(const char *path, const char *label, const bench_run_sum *r) {
  if (!path || !label || strlen(label) >= BENCH_LABEL_MAX || strpbrk(label, "\t\n"))
    return false;
  FILE *f = fopen(path, "a");
  if (!f)
    return false;
  int n = fprintf(f,
                  "%s\t%s\t%u\t%d\t%zu\t%zu\t%zu\t%.9g\t%.9g\t%.9g\t%.9g\t%.9g\t%.9g"
                  "\t%" PRIu32 "\t%" PRIu32 "\t%" PRIu32 "\t%" PRIu32 "\t%" PRIu32 "\n",
                  RAW_TAG, label, r->sessions, r->reuse ? 1 : 0, r->asked, r->tried, r->ok,
                  r->wall_s, r->srv_cpu_s, r->srv_sys_s, r->cli_cpu_s, r->other_cpu_s,
                  r->mach_s, r->p50, r->p90, r->p99, r->hs50, r->rq50);
  bool ok = n > 0;
  if (fclose(f) != 0)
    ok = false;
  return ok;
}

static bool parse_u64(const char *s, unsigned long long max, unsigned long long *out) {
  char *end = NULL;
  errno = 0;
  *out = strtoull(s, &end, 10);
  return !errno && end != s && !*end && s[0] != '-' && *out <= max;
}

static bool parse_double(const char *s, double *out) {
  char *end = NULL;
  errno = 0;
  *out = strtod(s, &end);
  return !errno && end != s && !*end;
}

/* One raw line into @p label and @p r; false if it is not one. */
static bool parse_line(char *line, char *label, bench_run_sum *r) {
  char *f[RF__MAX + 2];
  unsigned long long u[RF__MAX];
  double d[RF__MAX];
  size_t nf = 0;
  char *save = NULL;

  line[strcspn(line, "\n")] = '\0';
  for (char *t = strtok_r(line, "\t", &save); t && nf < RF__MAX + 2;
       t = strtok_r(NULL, "\t", &save))
    f[nf++] = t;
  if (nf != RF__MAX + 2 || strcmp(f[0], RAW_TAG) != 0 || strlen(f[1]) >= BENCH_LABEL_MAX)
    return false;
  for (int i = 0; i < RF__MAX; i++) {
    const char *v = f[i + 2];
    bool real = i >= RF_WALL && i <= RF_MACH;
    if (real ? !parse_double(v, &d[i]) : !parse_u64(v, UINT32_MAX, &u[i]))
      return false;
  }
  if (u[RF_REUSE] > 1 || u[RF_TRIED] > u[RF_ASKED] || u[RF_OK] > u[RF_TRIED])
    return false;
  memset(r, 0, sizeof *r);
  snprintf(label, BENCH_LABEL_MAX, "%s", f[1]);
  r->sessions = (unsigned)u[RF_SESSIONS];
  r->reuse = u[RF_REUSE] != 0;
  r->asked = (size_t)u[RF_ASKED];
  r->tried = (size_t)u[RF_TRIED];
  r->ok = (size_t)u[RF_OK];
  r->wall_s = d[RF_WALL];
  r->srv_cpu_s = d[RF_SRV];
  r->srv_sys_s = d[RF_SYS];
  r->cli_cpu_s = d[RF_CLI];
  r->other_cpu_s = d[RF_OTHER];
  r->mach_s = d[RF_MACH];
  r->p50 = (uint32_t)u[RF_P50];
  r->p90 = (uint32_t)u[RF_P90];
  r->p99 = (uint32_t)u[RF_P99];
  r->hs50 = (uint32_t)u[RF_HS50];
  r->rq50 = (uint32_t)u[RF_RQ50];
  return true;
}

/* A row of the report: its label and runs. */
typedef struct report_row {
  char label[BENCH_LABEL_MAX];
  bench_run_sum runs[BENCH_REPORT_RUNS];
  size_t n;
} report_row;

bool bench_raw_report(const char *path, FILE *out) {
  char line[RAW_LINE_MAX], label[BENCH_LABEL_MAX];
  bench_run_sum r;
  size_t nrows = 0, bad = 0;
  bool ok = false;
  FILE *f = fopen(path, "r");
  report_row *rows = calloc(BENCH_REPORT_ROWS, sizeof *rows);
  if (!f || !rows)
    goto out;
  for (unsigned i = 0; i < RAW_LINES_MAX && fgets(line, sizeof line, f); i++) {
    if (!parse_line(line, label, &r)) {
      bad++;
      continue;
    }
    size_t k = 0;
    while (k < nrows && strcmp(rows[k].label, label) != 0)
      k++;
    if (k == nrows) {
      if (nrows == BENCH_REPORT_ROWS) {
        bad++;
        continue;
      }
      snprintf(rows[nrows++].label, BENCH_LABEL_MAX, "%s", label);
    }
    if (rows[k].n < BENCH_REPORT_RUNS)
      rows[k].runs[rows[k].n++] = r;
    else
      bad++;
  }
  if (bad)
    fprintf(stderr, "est-bench: %s: %zu line(s) skipped (malformed or over the caps)\n",
            path, bad);
  for (size_t k = 0; k < nrows; k++)
    bench_report_row(out, rows[k].label, rows[k].runs, rows[k].n);
  ok = nrows > 0;
out:
  if (f)
    fclose(f);
  free(rows);
  return ok;
}
