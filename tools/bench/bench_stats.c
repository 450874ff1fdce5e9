/* Small numeric and /proc helpers for est-bench. */
#define _GNU_SOURCE
#include "bench_stats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>

#define PROC_STAT_MAX 4096
#define CPUINFO_LINES_MAX 4096

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

void bench_sort_u32(uint32_t *v, size_t n) {
  if (v && n > 1)
    qsort(v, n, sizeof *v, cmp_u32);
}

uint32_t bench_percentile(const uint32_t *v, size_t n, double p) {
  if (!v || n == 0)
    return 0;
  /* Nearest rank: the smallest value with at least p% at or below it. */
  double rank = ceil(p / 100.0 * (double)n);
  size_t i = rank < 1.0 ? 0 : (size_t)rank - 1;
  return v[i < n ? i : n - 1];
}

double bench_median(double *v, size_t n) {
  if (!v || n == 0)
    return 0.0;
  qsort(v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

bool bench_proc_cpu_ns(pid_t pid, uint64_t *user_ns, uint64_t *sys_ns) {
  char path[64], buf[PROC_STAT_MAX];
  unsigned long long utime = 0, stime = 0;
  bool ok = false;
  snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return false;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose(f);
  /* The command name may hold spaces and parentheses: fields are counted
   * after its last ')'. Field 3 (state) follows; utime and stime are
   * fields 14 and 15 (proc(5)). */
  char *p = strrchr(buf, ')');
  long tck = sysconf(_SC_CLK_TCK);
  if (!p || tck <= 0)
    return false;
  p++;
  if (sscanf(p, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) ==
      2) {
    *user_ns = (uint64_t)utime * (1000000000u / (uint64_t)tck);
    *sys_ns = (uint64_t)stime * (1000000000u / (uint64_t)tck);
    ok = true;
  }
  return ok;
}

bool bench_machine_busy_ns(uint64_t *ns) {
  unsigned long long user, nice, sys, idle, iowait, irq, softirq, steal;
  long tck = sysconf(_SC_CLK_TCK);
  FILE *f = fopen("/proc/stat", "r");
  if (!f || tck <= 0) {
    if (f)
      fclose(f);
    return false;
  }
  /* proc(5): the first line sums all CPUs; guest time is inside user. */
  int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &user, &nice, &sys,
                 &idle, &iowait, &irq, &softirq, &steal);
  fclose(f);
  if (n != 8)
    return false;
  *ns =
      (uint64_t)(user + nice + sys + irq + softirq + steal) * (1000000000u / (uint64_t)tck);
  return true;
}

void bench_cpu_model(char *out, size_t len) {
  char line[512];
  snprintf(out, len, "unknown");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f)
    return;
  for (int i = 0; i < CPUINFO_LINES_MAX && fgets(line, sizeof line, f); i++) {
    if (strncmp(line, "model name", 10) != 0)
      continue;
    char *v = strchr(line, ':');
    if (!v)
      break;
    v++;
    while (*v == ' ' || *v == '\t')
      v++;
    v[strcspn(v, "\n")] = '\0';
    snprintf(out, len, "%s", v);
    break;
  }
  fclose(f);
}

double bench_sign_us(bool rsa, unsigned n) {
  gnutls_privkey_t key = NULL;
  uint8_t data[400];
  gnutls_datum_t in = {data, sizeof data}, sig = {NULL, 0};
  struct timespec a, b;
  double us = -1.0;
  unsigned i = 0;

  memset(data, 0x5a, sizeof data);
  if (n == 0 || gnutls_privkey_init(&key) < 0)
    return -1.0;
  int rc =
      rsa ? gnutls_privkey_generate(key, GNUTLS_PK_RSA, 2048, 0)
          : gnutls_privkey_generate(key, GNUTLS_PK_ECDSA,
                                    GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0);
  if (rc < 0)
    goto out;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (; i < n; i++) {
    if (gnutls_privkey_sign_data(key, GNUTLS_DIG_SHA256, 0, &in, &sig) < 0)
      goto out;
    gnutls_free(sig.data);
    sig.data = NULL;
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  us = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / 1e3 / n;
out:
  gnutls_privkey_deinit(key);
  return us;
}
