/**
 * @file bench_report.h
 * @brief est-bench's figures: one run's summary, the table row made of the
 * medians of several runs, and the raw file that lets scripts/bench.sh
 * interleave the runs of different rows (so that a shared machine's drift
 * hits every row alike) and print the table at the end.
 */
#ifndef BENCH_REPORT_H
#define BENCH_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define BENCH_LABEL_MAX 64u   /**< longest row label, NUL included */
#define BENCH_REPORT_RUNS 64u /**< runs per row the report keeps */
#define BENCH_REPORT_ROWS 64u /**< rows per report */

/** What one run measured. Times in seconds, latencies in µs. */
typedef struct bench_run_sum {
  unsigned sessions;
  bool reuse;
  size_t asked;           /**< operations asked for */
  size_t tried;           /**< of which started (the time limit may cut some) */
  size_t ok;              /**< of which succeeded (the rest are errors) */
  double wall_s;          /**< release .. last answer */
  double srv_cpu_s;       /**< coapd utime + stime; < 0: not measured */
  double srv_sys_s;       /**< its stime part */
  double cli_cpu_s;       /**< the workers' CPU time */
  double other_cpu_s;     /**< the rest of the machine; < 0: unknown */
  double mach_s;          /**< the interval other_cpu_s covers */
  uint32_t p50, p90, p99; /**< whole operation, successful ones */
  uint32_t hs50;          /**< handshake median; 0: none (reused sessions) */
  uint32_t rq50;          /**< request median */
} bench_run_sum;

/** The column header of the rows. */
void bench_report_header(FILE *out);

/**
 * One table row for @p label from @p n runs: sums of ops and errors,
 * medians of everything else (latency percentiles: the median of each
 * run's percentile).
 */
void bench_report_row(FILE *out, const char *label, const bench_run_sum *runs, size_t n);

/** Append one run to a raw file (one tab-separated line). */
bool bench_raw_append(const char *path, const char *label, const bench_run_sum *run);

/**
 * Print the rows of a raw file: one per label, in the order labels first
 * appear, each from all of its runs. false if the file cannot be read or
 * holds no valid line (malformed lines are skipped with a warning).
 */
bool bench_raw_report(const char *path, FILE *out);

#endif /* BENCH_REPORT_H */
