/**
 * @file bench_stats.h
 * @brief Figures for est-bench: percentiles, medians, another process's
 * CPU time from /proc, and a description of the machine.
 */
#ifndef BENCH_STATS_H
#define BENCH_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/** Sort @p v ascending (in place). */
void bench_sort_u32(uint32_t *v, size_t n);

/**
 * The nearest-rank @p p-th percentile (0 < p <= 100) of ascending @p v;
 * 0 when @p n is 0.
 */
uint32_t bench_percentile(const uint32_t *v, size_t n, double p);

/** The median of @p v (reordered); 0 when @p n is 0. */
double bench_median(double *v, size_t n);

/**
 * The CPU time of process @p pid (all its threads) from /proc/PID/stat:
 * utime in *user_ns, stime in *sys_ns, in nanoseconds. The kernel reports
 * clock ticks (usually 10 ms), so a difference is exact to one tick.
 * false if the process is gone.
 */
bool bench_proc_cpu_ns(pid_t pid, uint64_t *user_ns, uint64_t *sys_ns);

/**
 * Busy CPU time of the whole machine so far (user, nice, system, irq,
 * softirq and steal of the "cpu" line of /proc/stat), in nanoseconds.
 * false if /proc/stat cannot be read.
 */
bool bench_machine_busy_ns(uint64_t *ns);

/**
 * A calibration of this CPU right now: the mean time of one SHA-256
 * signature over 400 bytes with GnuTLS, with a fresh RSA-2048 key (@p rsa)
 * or EC P-256 key, over @p n signatures, in µs. docs/performance.md measured
 * 1283 and 43 µs. Negative on failure.
 */
double bench_sign_us(bool rsa, unsigned n);

/** The first "model name" of /proc/cpuinfo, or "unknown". */
void bench_cpu_model(char *out, size_t len);

#endif /* BENCH_STATS_H */
