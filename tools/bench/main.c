/* est-bench: how many enrollments per second coapd + est_coaps.so does on
 * this machine, and what each costs the server in CPU time.
 *
 * The load comes from this process, not from coap-client processes
 * (docs/performance.md: 4.4x the cost per request). est_client handles one DTLS
 * session at a time and libcoap 4.3.1 is not thread-safe, so M concurrent
 * sessions are M forked workers, each with its own est_client, all set up
 * (and keys generated) before the clock starts. Results go into shared
 * memory; the parent reads the server's CPU time from /proc before and after. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <coap3/coap.h>
#include <gnutls/gnutls.h>

#include "bench_op.h"
#include "bench_report.h"
#include "bench_stats.h"
#include "tools/enroll/certs.h"
#include "tools/enroll/client.h"
#include "tools/enroll/csr.h"

#define DIAG_LEN 200
#define COUNT_MAX 1000000u
#define SESSIONS_MAX 256u
#define RUNS_MAX 20u
#define WARMUP_MAX 100u
#define TIME_LIMIT_MAX 3600u
#define TIMEOUT_MAX 120u
#define SETUP_LIMIT_S 60u /* workers: client set-up and warm-up */
#define SETTLE_MS 100u    /* let the server finish the last close_notify */
#define REAP_GRACE_S 10u
#define CALIB_RSA_SIGNS 200u
#define CALIB_EC_SIGNS 3000u

/* What this invocation does. */
typedef enum bench_mode {
  MODE_BENCH = 0, /* measure and print a row */
  MODE_INFO,
  MODE_HEADER,
  MODE_HELP,
  MODE_VERSION,
  MODE_CALIBRATE,
  MODE_REPORT,
} bench_mode;

/* The command line. */
typedef struct bench_conf {
  const char *host;
  unsigned port;
  const char *cert, *key, *trust, *issuer;
  const char *root;
  const char *label;
  const char *raw;    /* --raw: append each run here */
  const char *report; /* --report: print the rows of this raw file */
  bench_scn scn;
  unsigned count, sessions, warmup, runs, time_limit_s, timeout_s;
  bool reuse;
  long server_pid;
  cpu_set_t cpus;
  bool pin;
  int verbose;
} bench_conf;

/* One worker's corner of the shared memory. */
typedef struct bench_slot {
  uint64_t end_ns; /* CLOCK_MONOTONIC after its last timed operation */
  uint64_t cpu_ns; /* its own CPU time during the timed part */
  unsigned warm_errors;
  char setup_diag[DIAG_LEN];
  char diag[BENCH_STATUS__MAX][DIAG_LEN]; /* the first reason of each kind */
} bench_slot;

/* What one run measured. */
typedef struct run_result {
  bench_run_sum sum; /* what goes into the table */
  size_t attempted;  /* operations started (not cut by the time limit) */
  size_t by_status[BENCH_STATUS__MAX];
  unsigned handshakes;
  unsigned warm_errors;
} run_result;

/* Latencies of one run's successful operations, in µs (scratch). */
typedef struct lat_buf {
  uint32_t *total, *hs, *req;
  size_t n_total, n_hs, n_req;
} lat_buf;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_self_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warn(const char *fmt, ...) {
  va_list ap;
  fputs("est-bench: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

static void usage(FILE *f) {
  fputs(
      "usage: est-bench --port PORT --cert FILE --key FILE --trust FILE [options]\n"
      "       est-bench --info | --calibrate | --table-header | --report FILE\n"
      "Enrolls against a running coapd + est_coaps.so from M concurrent DTLS sessions\n"
      "and prints one table row (tools/bench/README.md explains the columns).\n"
      "  --host ADDR          server address (default 127.0.0.1)\n"
      "  --port PORT          server port\n"
      "  --cert/--key FILE    the client's certificate and key (PEM), e.g. an IDevID\n"
      "  --trust FILE         trust anchors for the server certificate (PEM)\n"
      "  --issuer FILE        the EST CA, to check issued certificates (default --trust)\n"
      "  --scenario S         sen (default), crts or skg\n"
      "  --count N            timed operations per run (default 200)\n"
      "  --sessions M         concurrent DTLS sessions = worker processes (default 8)\n"
      "  --reuse              one DTLS session per worker for all its operations\n"
      "                       (default: a new session per operation)\n"
      "  --warmup W           untimed operations per worker first (default 2)\n"
      "  --runs R             repeat the measurement R times (default 1)\n"
      "  --time-limit S       per run: start no operation after S seconds (default 60)\n"
      "  --timeout S          per handshake and per request (default 10)\n"
      "  --server-pid PID     coapd's pid: measure its CPU time from /proc/PID/stat\n"
      "  --client-cpus LIST   pin the workers to these CPUs, e.g. 1 or 0-1\n"
      "  --root PATH          the EST root (default /est)\n"
      "  --label TEXT         the row's name (default: scenario and session mode)\n"
      "  --raw FILE           also append each run to FILE (for --report)\n"
      "  -v                   one line per run on stderr; -vv, -vvv add libcoap logs\n"
      "  --info               print the machine and the library versions\n"
      "  -V, --version        print the version\n"
      "  --calibrate          time GnuTLS RSA-2048 and P-256 signatures on this CPU now\n"
      "  --table-header       print the column header of the rows\n"
      "  --report FILE        print one row per label of a --raw file: the medians of\n"
      "                       its runs, wherever they were in the file\n"
      "Exit status: 0 every operation succeeded, 1 errors (counted in the row and\n"
      "explained on stderr), 2 usage.\n",
      f);
}

static bool parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out) {
  char *end = NULL;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || !end || end == s || *end || s[0] == '-' || v < lo || v > hi)
    return false;
  *out = (unsigned)v;
  return true;
}

/* "1", "0,2", "0-3": at most CPU_SETSIZE CPUs. */
static bool parse_cpus(const char *s, cpu_set_t *set) {
  char buf[256];
  CPU_ZERO(set);
  if (strlen(s) >= sizeof buf)
    return false;
  snprintf(buf, sizeof buf, "%s", s);
  char *save = NULL;
  for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    unsigned a, b;
    char *dash = strchr(tok, '-');
    if (dash)
      *dash = '\0';
    if (!parse_uint(tok, 0, CPU_SETSIZE - 1, &a))
      return false;
    b = a;
    if (dash && !parse_uint(dash + 1, a, CPU_SETSIZE - 1, &b))
      return false;
    for (unsigned i = a; i <= b; i++)
      CPU_SET(i, set);
  }
  return CPU_COUNT(set) > 0;
}

static void print_info(void) {
  char model[256], tls[256];
  struct utsname u;
  bench_cpu_model(model, sizeof model);
  if (uname(&u) != 0)
    memset(&u, 0, sizeof u);
  coap_string_tls_version(tls, sizeof tls);
  printf("machine:  %ld CPUs online (nproc), %s; %s %s %s\n", sysconf(_SC_NPROCESSORS_ONLN),
         model, u.sysname, u.release, u.machine);
  /* The server's SQLite version is in coapd's start-up log. */
  printf("versions: est-coaps %s, %s (%s), GnuTLS %s\n", EST_VERSION,
         coap_package_version(), tls, gnutls_check_version(NULL));
}

/* The same parts docs/performance.md timed, now: how fast this (shared) CPU is
 * at the moment, to scale its ceilings by. */
static void print_calibration(void) {
  printf(
      "GnuTLS signature RSA-2048 %.0f us, P-256 %.0f us (docs/performance.md: 1283 / 43 us)\n",
      bench_sign_us(true, CALIB_RSA_SIGNS), bench_sign_us(false, CALIB_EC_SIGNS));
}

static bench_status worker_op(ec_client *c, const bench_target *t, size_t idx,
                              bench_rec *rec, bench_slot *slot) {
  char diag[DIAG_LEN];
  bench_status st = bench_op_run(c, t, idx, rec, diag, sizeof diag);
  if (st != BENCH_OK && st < BENCH_STATUS__MAX && !slot->diag[st][0])
    snprintf(slot->diag[st], sizeof slot->diag[st], "%s", diag[0] ? diag : "(no detail)");
  return st;
}

/* A worker: set up, warm up, say ready, wait for the start, run its share
 * (operations w, w+M, w+2M, ...) until done or the time limit. */
static int worker_main(const bench_conf *cf, unsigned w, const bench_target *timed,
                       const bench_target *warm, bench_rec *recs, bench_slot *slot,
                       int ready_fd, int start_fd) {
  ec_client *c = NULL;
  ec_client_conf cc;
  bench_rec scratch;
  char go = 0, byte = 'F';
  int rc = 1;

  memset(&cc, 0, sizeof cc);
  cc.cert_file = cf->cert;
  cc.key_file = cf->key;
  cc.trust_file = cf->trust;
  cc.timeout_s = cf->timeout_s;
  cc.verbose = cf->verbose > 1 ? cf->verbose - 1 : 0;
  if (ec_client_new(&cc, &c, slot->setup_diag, sizeof slot->setup_diag) != EST_OK) {
    if (!slot->setup_diag[0])
      snprintf(slot->setup_diag, sizeof slot->setup_diag, "cannot set up the client");
    goto signal;
  }
  for (unsigned k = 0; k < cf->warmup; k++)
    if (worker_op(c, warm, (size_t)w * cf->warmup + k, &scratch, slot) != BENCH_OK)
      slot->warm_errors++;
  /* Reused sessions are opened before the clock starts. */
  if (cf->reuse && !ec_client_is_connected_to(c, cf->host, (uint16_t)cf->port) &&
      ec_client_connect(c, cf->host, (uint16_t)cf->port, slot->setup_diag,
                        sizeof slot->setup_diag) != EST_OK)
    goto signal;
  byte = 'R';
signal:
  if (write(ready_fd, &byte, 1) != 1 || byte != 'R')
    goto out;
  /* The parent closes the pipe to start everyone at once. */
  ssize_t n;
  do
    n = read(start_fd, &go, 1);
  while (n < 0 && errno == EINTR);
  uint64_t start = now_ns(), cpu0 = cpu_self_ns();
  uint64_t deadline = start + (uint64_t)cf->time_limit_s * 1000000000u;
  for (size_t i = w; i < cf->count; i += cf->sessions) {
    if (now_ns() >= deadline)
      break; /* the rest stay BENCH_NOT_RUN */
    (void)worker_op(c, timed, i, &recs[i], slot);
  }
  slot->end_ns = now_ns();
  slot->cpu_ns = cpu_self_ns() - cpu0;
  rc = 0;
out:
  ec_client_free(c);
  ec_client_cleanup();
  return rc;
}

static void kill_all(pid_t *pids, unsigned n) {
  for (unsigned i = 0; i < n; i++)
    if (pids[i] > 0)
      kill(pids[i], SIGKILL);
  for (unsigned i = 0; i < n; i++)
    if (pids[i] > 0 && waitpid(pids[i], NULL, 0) == pids[i])
      pids[i] = 0;
}

/* Wait for the workers until @p deadline; kill the ones still there.
 * Returns how many did not end with status 0. */
static unsigned reap(pid_t *pids, unsigned n, uint64_t deadline) {
  unsigned bad = 0, left = 0;
  for (unsigned i = 0; i < n; i++)
    left += pids[i] > 0;
  while (left > 0) {
    int st = 0;
    pid_t p = waitpid(-1, &st, WNOHANG);
    if (p > 0) {
      for (unsigned i = 0; i < n; i++) {
        if (pids[i] == p) {
          pids[i] = 0;
          left--;
          if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            bad++;
        }
      }
      continue;
    }
    if (p < 0 && errno != EINTR)
      break;
    if (now_ns() >= deadline) {
      warn("%u worker(s) still running at the hard time limit: killed", left);
      kill_all(pids, n);
      bad += left;
      break;
    }
    sleep_ms(1);
  }
  return bad;
}

/* ", run 2" when there are several runs, "" for one. */
static const char *run_name(const bench_conf *cf, unsigned run, char *buf, size_t len) {
  if (cf->runs < 2)
    return "";
  snprintf(buf, len, ", run %u", run + 1);
  return buf;
}

static void report_errors(const bench_conf *cf, const run_result *r,
                          const bench_slot *slots, unsigned run) {
  char who[32];
  for (int s = 1; s < BENCH_STATUS__MAX; s++) {
    if (!r->by_status[s])
      continue;
    const char *why = "";
    for (unsigned w = 0; w < cf->sessions && !why[0]; w++)
      why = slots[w].diag[s];
    warn("%s%s: %zu %s error(s)%s%s", cf->label, run_name(cf, run, who, sizeof who),
         r->by_status[s], bench_status_name((bench_status)s), why[0] ? ", first: " : "",
         why);
  }
  if (r->warm_errors) {
    const char *why = "";
    for (unsigned w = 0; w < cf->sessions && !why[0]; w++)
      for (int s = 1; s < BENCH_STATUS__MAX && !why[0]; s++)
        why = slots[w].diag[s];
    warn("%s%s: %u warm-up error(s) (not in the figures)%s%s", cf->label,
         run_name(cf, run, who, sizeof who), r->warm_errors, why[0] ? ", e.g. " : "", why);
  }
}

/* One measurement: fork the workers, start them together, collect. */
static int run_once(const bench_conf *cf, unsigned run, const bench_target *timed,
                    const bench_target *warm, bench_rec *recs, bench_slot *slots,
                    lat_buf *lat, run_result *res) {
  pid_t pids[SESSIONS_MAX];
  int ready[2] = {-1, -1}, start[2] = {-1, -1};
  unsigned forked = 0, got = 0;
  char who[32];
  uint64_t usr0 = 0, usr1 = 0, sys0 = 0, sys1 = 0, mach0 = 0, mach1 = 0;
  bool srv = cf->server_pid > 0;
  int rc = 1;

  memset(res, 0, sizeof *res);
  lat->n_total = lat->n_hs = lat->n_req = 0;
  memset(pids, 0, sizeof pids);
  memset(slots, 0, sizeof *slots * cf->sessions);
  for (size_t i = 0; i < cf->count; i++) {
    memset(&recs[i], 0, sizeof recs[i]);
    recs[i].status = BENCH_NOT_RUN;
  }
  if (pipe(ready) != 0 || pipe(start) != 0) {
    warn("pipe: %s", strerror(errno));
    goto out;
  }
  fflush(stdout);
  fflush(stderr);
  pid_t parent = getpid();
  for (; forked < cf->sessions; forked++) {
    pid_t p = fork();
    if (p < 0) {
      warn("fork: %s", strerror(errno));
      goto out;
    }
    if (p == 0) {
      /* Die with the parent (e.g. killed by an outer timeout). */
      if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(1);
      close(ready[0]);
      close(start[1]);
      _exit(worker_main(cf, forked, timed, warm, recs, &slots[forked], ready[1], start[0]));
    }
    pids[forked] = p;
  }
  close(ready[1]);
  ready[1] = -1;
  close(start[0]);
  start[0] = -1;

  /* Everyone set up and warmed up, or a reason why not. */
  uint64_t setup_end = now_ns() + (uint64_t)SETUP_LIMIT_S * 1000000000u;
  while (got < cf->sessions) {
    uint64_t now = now_ns();
    if (now >= setup_end) {
      warn("workers not ready within %u s", SETUP_LIMIT_S);
      goto out;
    }
    struct pollfd pfd = {ready[0], POLLIN, 0};
    int pr = poll(&pfd, 1, (int)((setup_end - now) / 1000000u) + 1);
    if (pr < 0 && errno == EINTR)
      continue;
    if (pr <= 0)
      continue;
    char b;
    ssize_t n = read(ready[0], &b, 1);
    if (n == 1 && b == 'R') {
      got++;
      continue;
    }
    for (unsigned w = 0; w < cf->sessions; w++)
      if (slots[w].setup_diag[0]) {
        warn("worker %u: %s", w + 1, slots[w].setup_diag);
        break;
      }
    if (n == 0)
      warn("a worker exited during set-up");
    goto out;
  }
  if (srv && !bench_proc_cpu_ns((pid_t)cf->server_pid, &usr0, &sys0)) {
    warn("no process %ld (--server-pid)", cf->server_pid);
    goto out;
  }
  bool mach = bench_machine_busy_ns(&mach0);
  uint64_t go = now_ns();
  close(start[1]); /* go */
  start[1] = -1;
  unsigned bad =
      reap(pids, cf->sessions,
           go + ((uint64_t)cf->time_limit_s + cf->timeout_s + REAP_GRACE_S) * 1000000000u);
  sleep_ms(SETTLE_MS);
  mach = mach && bench_machine_busy_ns(&mach1);
  res->sum.mach_s = (double)(now_ns() - go) / 1e9;
  if (srv && !bench_proc_cpu_ns((pid_t)cf->server_pid, &usr1, &sys1)) {
    warn("%s%s: the server (pid %ld) is gone", cf->label,
         run_name(cf, run, who, sizeof who), cf->server_pid);
    srv = false;
  }

  bench_run_sum *sum = &res->sum;
  uint64_t end = go;
  for (unsigned w = 0; w < cf->sessions; w++) {
    if (slots[w].end_ns > end)
      end = slots[w].end_ns;
    sum->cli_cpu_s += (double)slots[w].cpu_ns / 1e9;
    res->warm_errors += slots[w].warm_errors;
  }
  sum->sessions = cf->sessions;
  sum->reuse = cf->reuse;
  sum->asked = cf->count;
  sum->wall_s = (double)(end - go) / 1e9;
  sum->srv_cpu_s = srv ? (double)(usr1 + sys1 - usr0 - sys0) / 1e9 : -1.0;
  sum->srv_sys_s = srv ? (double)(sys1 - sys0) / 1e9 : -1.0;
  /* Other work on the machine during the run: its busy time less ours
   * (the server's, if known, and the workers'). Skews every figure. */
  sum->other_cpu_s = -1.0;
  if (mach && srv) {
    double o = (double)(mach1 - mach0) / 1e9 - sum->srv_cpu_s - sum->cli_cpu_s;
    sum->other_cpu_s = o > 0 ? o : 0.0;
  }
  for (size_t i = 0; i < cf->count; i++) {
    const bench_rec *r = &recs[i];
    bench_status st = r->status < BENCH_STATUS__MAX ? (bench_status)r->status : BENCH_CODE;
    res->by_status[st]++;
    if (st != BENCH_NOT_RUN)
      res->attempted++;
    if (r->hs_us)
      res->handshakes++;
    if (st != BENCH_OK)
      continue;
    sum->ok++;
    lat->total[lat->n_total++] = r->total_us;
    lat->req[lat->n_req++] = r->req_us;
    if (r->hs_us)
      lat->hs[lat->n_hs++] = r->hs_us;
  }
  sum->tried = res->attempted;
  bench_sort_u32(lat->total, lat->n_total);
  bench_sort_u32(lat->hs, lat->n_hs);
  bench_sort_u32(lat->req, lat->n_req);
  sum->p50 = bench_percentile(lat->total, lat->n_total, 50);
  sum->p90 = bench_percentile(lat->total, lat->n_total, 90);
  sum->p99 = bench_percentile(lat->total, lat->n_total, 99);
  sum->hs50 = bench_percentile(lat->hs, lat->n_hs, 50);
  sum->rq50 = bench_percentile(lat->req, lat->n_req, 50);
  report_errors(cf, res, slots, run);
  if (bad)
    warn("%s%s: %u worker(s) failed", cf->label, run_name(cf, run, who, sizeof who), bad);
  rc = bad ? 1 : 0;
out:
  if (rc != 0)
    kill_all(pids, forked);
  for (int i = 0; i < 2; i++) {
    if (ready[i] >= 0)
      close(ready[i]);
    if (start[i] >= 0)
      close(start[i]);
  }
  return rc;
}

static bool parse_args(int argc, char **argv, bench_conf *cf, bench_mode *mode) {
  /* Long options only; their values start above any character. */
  /* clang-format off */
  enum opt_id {
    O_HOST = 256, O_PORT, O_CERT, O_KEY, O_TRUST, O_ISSUER, O_SCN, O_COUNT, O_SESS,
    O_REUSE, O_WARM, O_RUNS, O_TLIM, O_TOUT, O_PID, O_CPUS, O_ROOT, O_LABEL, O_INFO,
    O_HDR, O_CAL, O_RAW, O_REPORT
  };
  /* clang-format on */
  static const struct option opts[] = {
      {"host", required_argument, NULL, O_HOST},
      {"port", required_argument, NULL, O_PORT},
      {"cert", required_argument, NULL, O_CERT},
      {"key", required_argument, NULL, O_KEY},
      {"trust", required_argument, NULL, O_TRUST},
      {"issuer", required_argument, NULL, O_ISSUER},
      {"scenario", required_argument, NULL, O_SCN},
      {"count", required_argument, NULL, O_COUNT},
      {"sessions", required_argument, NULL, O_SESS},
      {"reuse", no_argument, NULL, O_REUSE},
      {"warmup", required_argument, NULL, O_WARM},
      {"runs", required_argument, NULL, O_RUNS},
      {"time-limit", required_argument, NULL, O_TLIM},
      {"timeout", required_argument, NULL, O_TOUT},
      {"server-pid", required_argument, NULL, O_PID},
      {"client-cpus", required_argument, NULL, O_CPUS},
      {"root", required_argument, NULL, O_ROOT},
      {"label", required_argument, NULL, O_LABEL},
      {"info", no_argument, NULL, O_INFO},
      {"table-header", no_argument, NULL, O_HDR},
      {"calibrate", no_argument, NULL, O_CAL},
      {"raw", required_argument, NULL, O_RAW},
      {"report", required_argument, NULL, O_REPORT},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},
      {NULL, 0, NULL, 0},
  };
  unsigned v;
  int o;

  memset(cf, 0, sizeof *cf);
  cf->host = "127.0.0.1";
  cf->root = "/est";
  cf->scn = BENCH_SCN_SEN;
  cf->count = 200;
  cf->sessions = 8;
  cf->warmup = 2;
  cf->runs = 1;
  cf->time_limit_s = 60;
  cf->timeout_s = 10;
  *mode = MODE_BENCH;
  while ((o = getopt_long(argc, argv, "hvV", opts, NULL)) != -1) {
    switch (o) {
    case O_HOST:
      cf->host = optarg;
      break;
    case O_PORT:
      if (!parse_uint(optarg, 1, 65535, &cf->port))
        goto bad;
      break;
    case O_CERT:
      cf->cert = optarg;
      break;
    case O_KEY:
      cf->key = optarg;
      break;
    case O_TRUST:
      cf->trust = optarg;
      break;
    case O_ISSUER:
      cf->issuer = optarg;
      break;
    case O_SCN:
      if (!bench_scn_parse(optarg, &cf->scn))
        goto bad;
      break;
    case O_COUNT:
      if (!parse_uint(optarg, 1, COUNT_MAX, &cf->count))
        goto bad;
      break;
    case O_SESS:
      if (!parse_uint(optarg, 1, SESSIONS_MAX, &cf->sessions))
        goto bad;
      break;
    case O_REUSE:
      cf->reuse = true;
      break;
    case O_WARM:
      if (!parse_uint(optarg, 0, WARMUP_MAX, &cf->warmup))
        goto bad;
      break;
    case O_RUNS:
      if (!parse_uint(optarg, 1, RUNS_MAX, &cf->runs))
        goto bad;
      break;
    case O_TLIM:
      if (!parse_uint(optarg, 1, TIME_LIMIT_MAX, &cf->time_limit_s))
        goto bad;
      break;
    case O_TOUT:
      if (!parse_uint(optarg, 1, TIMEOUT_MAX, &cf->timeout_s))
        goto bad;
      break;
    case O_PID:
      if (!parse_uint(optarg, 1, 0x7fffffff, &v))
        goto bad;
      cf->server_pid = (long)v;
      break;
    case O_CPUS:
      if (!parse_cpus(optarg, &cf->cpus))
        goto bad;
      cf->pin = true;
      break;
    case O_ROOT:
      cf->root = optarg;
      break;
    case O_LABEL:
      cf->label = optarg;
      break;
    case O_INFO:
      *mode = MODE_INFO;
      break;
    case O_HDR:
      *mode = MODE_HEADER;
      break;
    case O_CAL:
      *mode = MODE_CALIBRATE;
      break;
    case O_RAW:
      cf->raw = optarg;
      break;
    case O_REPORT:
      cf->report = optarg;
      *mode = MODE_REPORT;
      break;
    case 'v':
      cf->verbose++;
      break;
    case 'h':
      *mode = MODE_HELP;
      break;
    case 'V':
      *mode = MODE_VERSION;
      break;
    default:
      goto bad;
    }
  }
  if (optind != argc)
    goto bad;
  if (*mode != MODE_BENCH)
    return true;
  if (!cf->port || !cf->cert || !cf->key || !cf->trust) {
    warn("--port, --cert, --key and --trust are required");
    return false;
  }
  if (cf->label && (strlen(cf->label) >= BENCH_LABEL_MAX || strpbrk(cf->label, "\t\n"))) {
    warn("--label: at most %u characters, no tabs or newlines", BENCH_LABEL_MAX - 1);
    return false;
  }
  if (!cf->issuer)
    cf->issuer = cf->trust;
  if (cf->sessions > cf->count)
    cf->sessions = cf->count;
  return true;
bad:
  warn("bad arguments (see --help)");
  return false;
}

/* Client keys for every operation, made before any clock runs (client
 * keygen is not what is measured). crts needs none. */
static int make_keys(const bench_conf *cf, size_t n, gnutls_x509_privkey_t **out) {
  *out = NULL;
  if (cf->scn == BENCH_SCN_CRTS || n == 0)
    return 0;
  gnutls_x509_privkey_t *keys = calloc(n, sizeof *keys);
  if (!keys)
    return 1;
  *out = keys;
  uint64_t t0 = now_ns();
  for (size_t i = 0; i < n; i++) {
    if (ec_key_generate(EC_KEY_EC_P256, &keys[i]) != EST_OK) {
      warn("cannot generate key %zu", i);
      return 1;
    }
  }
  if (cf->verbose)
    warn("%zu P-256 client keys in %.2f s (not measured)", n,
         (double)(now_ns() - t0) / 1e9);
  return 0;
}

int main(int argc, char **argv) {
  bench_conf cf;
  bench_mode mode = MODE_BENCH;
  int rc = 2;
  gnutls_x509_privkey_t *keys = NULL;
  size_t nkeys = 0;
  bench_rec *recs = MAP_FAILED;
  bench_slot *slots = MAP_FAILED;
  size_t recs_size = 0, slots_size = 0;
  ec_certs anchors = {NULL, 0};
  run_result results[RUNS_MAX];
  bench_run_sum sums[RUNS_MAX];
  lat_buf lat;
  char diag[DIAG_LEN], tag[48], wtag[48], deflabel[BENCH_LABEL_MAX], who[32];
  unsigned done = 0;

  memset(&lat, 0, sizeof lat);
  if (!parse_args(argc, argv, &cf, &mode)) {
    usage(stderr);
    return 2;
  }
  switch (mode) {
  case MODE_INFO:
    print_info();
    return 0;
  case MODE_HEADER:
    bench_report_header(stdout);
    return 0;
  case MODE_HELP:
    usage(stdout);
    return 0;
  case MODE_VERSION:
    printf("est-bench %s\n", EST_VERSION);
    return 0;
  case MODE_CALIBRATE:
    print_calibration();
    return 0;
  case MODE_REPORT:
    return bench_raw_report(cf.report, stdout) ? 0 : 1;
  case MODE_BENCH:
    break;
  }
  rc = 1;
  if (!cf.label) {
    snprintf(deflabel, sizeof deflabel, "%s %s", bench_scn_name(cf.scn),
             cf.reuse ? "reused session" : "new session");
    cf.label = deflabel;
  }
  if (ec_certs_add_pem_file(&anchors, cf.issuer, diag, sizeof diag) != EST_OK) {
    warn("--issuer: %s", diag);
    goto out;
  }
  nkeys = (size_t)cf.count * cf.runs + (size_t)cf.warmup * cf.sessions;
  if (make_keys(&cf, nkeys, &keys) != 0)
    goto out;
  recs_size = sizeof *recs * cf.count;
  slots_size = sizeof *slots * cf.sessions;
  recs = mmap(NULL, recs_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  slots = mmap(NULL, slots_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  lat.total = calloc(cf.count, sizeof *lat.total);
  lat.hs = calloc(cf.count, sizeof *lat.hs);
  lat.req = calloc(cf.count, sizeof *lat.req);
  if (recs == MAP_FAILED || slots == MAP_FAILED || !lat.total || !lat.hs || !lat.req) {
    warn("out of memory");
    goto out;
  }
  /* The workers share the client CPUs; the server keeps its own. */
  if (cf.pin && sched_setaffinity(0, sizeof cf.cpus, &cf.cpus) != 0) {
    warn("--client-cpus: %s", strerror(errno));
    goto out;
  }
  /* CSR subjects differ between invocations, runs and the warm-up. */
  snprintf(wtag, sizeof wtag, "%ld-w", (long)getpid());
  bench_target warm = {.scn = cf.scn,
                       .host = cf.host,
                       .port = (uint16_t)cf.port,
                       .root = cf.root,
                       .reuse = cf.reuse,
                       .tag = wtag,
                       .keys = keys ? keys + (size_t)cf.count * cf.runs : NULL,
                       .anchors = &anchors};
  bool failed = false;
  for (unsigned r = 0; r < cf.runs; r++) {
    snprintf(tag, sizeof tag, "%ld-%u", (long)getpid(), r + 1);
    bench_target timed = {.scn = cf.scn,
                          .host = cf.host,
                          .port = (uint16_t)cf.port,
                          .root = cf.root,
                          .reuse = cf.reuse,
                          .tag = tag,
                          .keys = keys ? keys + (size_t)r * cf.count : NULL,
                          .anchors = &anchors};
    const run_result *x = &results[r];
    if (run_once(&cf, r, &timed, &warm, recs, slots, &lat, &results[r]) != 0) {
      failed = true;
      /* Set-up failures leave nothing to report. */
      if (x->attempted == 0)
        break;
    }
    const bench_run_sum *m = &x->sum;
    sums[done++] = *m;
    if (m->ok != cf.count)
      failed = true;
    if (cf.raw && !bench_raw_append(cf.raw, cf.label, m)) {
      warn("--raw %s: cannot append: %s", cf.raw, strerror(errno));
      failed = true;
    }
    if (cf.verbose)
      warn("%s%s: %zu/%zu ok in %.3f s = %.1f/s, server CPU %.3f s (%.3f s kernel), "
           "client CPU %.3f s, other CPU %.3f s, %u handshakes",
           cf.label, run_name(&cf, r, who, sizeof who), m->ok, x->attempted, m->wall_s,
           m->wall_s > 0 ? (double)m->ok / m->wall_s : 0.0, m->srv_cpu_s, m->srv_sys_s,
           m->cli_cpu_s, m->other_cpu_s, x->handshakes);
  }
  if (done)
    bench_report_row(stdout, cf.label, sums, done);
  rc = failed ? 1 : 0;
out:
  if (keys) {
    for (size_t i = 0; i < nkeys; i++)
      if (keys[i])
        gnutls_x509_privkey_deinit(keys[i]);
    free(keys);
  }
  ec_certs_clear(&anchors);
  if (recs != MAP_FAILED)
    munmap(recs, recs_size);
  if (slots != MAP_FAILED)
    munmap(slots, slots_size);
  free(lat.total);
  free(lat.hs);
  free(lat.req);
  return rc;
}
