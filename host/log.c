/* One log line per event (docs/operations.md "Logs"): on stderr
 * `2025-01-02T03:04:05.678Z notice msg`; on a journald stream (systemd
 * sets JOURNAL_STREAM) `<5>msg`, so journald keeps the priority and adds
 * the time itself; with `log_dest syslog` syslog(3), facility daemon.
 * libcoap's level is the one process-wide level (libcoap's log handler has
 * no user pointer), so coapd filters against coap_get_log_level(). */
#include "coapd.h"
#include "reboot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

static const char *level_name(int level) {
  if (level <= 3)
    return level < 3 ? "crit" : "error";
  if (level >= 7)
    return "debug";
  return coapd_log_level_name(level);
}

/* Where lines go: set from log_dest (coapd_log_dest). */
static enum { TO_STDERR, TO_JOURNAL, TO_SYSLOG } dest = TO_STDERR;

/* stderr is the stream systemd connected to journald: JOURNAL_STREAM holds
 * its "device:inode" (systemd.exec(5)). */
static int stderr_is_journal(void) {
  const char *js = getenv("JOURNAL_STREAM");
  unsigned long long dev, ino;
  struct stat st;
  if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) != 0)
    return 0;
  return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void coapd_log_dest(unsigned log_dest) {
  if (dest == TO_SYSLOG && log_dest != COAPD_LOG_DEST_SYSLOG)
    closelog();
  if (log_dest == COAPD_LOG_DEST_SYSLOG) {
    if (dest != TO_SYSLOG)
      openlog("coapd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
    dest = TO_SYSLOG;
  } else {
    dest = stderr_is_journal() ? TO_JOURNAL : TO_STDERR;
  }
}

/* Compose the whole line first so it reaches stderr in one write(). */
__attribute__((format(printf, 3, 0))) static void
emit(int level, const char *prefix, const char *fmt, va_list ap) {
  char line[LOG_LINE_MAX];
  size_t n = 0;
  int k;
  if (dest == TO_STDERR) {
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    k = snprintf(line + n, sizeof line - n, ".%03ldZ %s ", ts.tv_nsec / 1000000L,
                 level_name(level));
  } else if (dest == TO_JOURNAL) {
    k = snprintf(line, sizeof line, "<%d>", level < 2 ? 2 : level > 7 ? 7 : level);
  } else {
    k = 0;
  }
  if (k < 0)
    return;
  n += (size_t)k;
  k = snprintf(line + n, sizeof line - n, "%s%s", prefix ? prefix : "", prefix ? " " : "");
  if (k < 0)
    return;
  n += (size_t)k;
  size_t body = n;
  k = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
  if (k < 0)
    return;
  n += (size_t)k < sizeof line - n - 1 ? (size_t)k : sizeof line - n - 2;
  /* Drop trailing newlines (libcoap adds them); never let peer-supplied
   * text split a line or inject escapes. */
  while (n > body &&
         (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
    n--;
  for (size_t i = body; i < n; i++) {
    unsigned char c = (unsigned char)line[i];
    if (c < 0x20 || c == 0x7f)
      line[i] = '?';
  }
  if (dest == TO_SYSLOG) {
    line[n] = '\0';
    syslog(level < 2 ? 2 : level > 7 ? 7 : level, "%s", line);
    return;
  }
  line[n++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, n);
  (void)w;
}

void coapd_vlog_always(int level, const char *prefix, const char *fmt, va_list ap) {
  emit(level, prefix, fmt, ap);
}

void coapd_vlog(int level, const char *prefix, const char *fmt, va_list ap) {
  if (level > (int)coap_get_log_level())
    return;
  emit(level, prefix, fmt, ap);
}

void coapd_log(int level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  coapd_vlog(level, NULL, fmt, ap);
  va_end(ap);
}

void coapd_log_always(int level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  emit(level, NULL, fmt, ap);
  va_end(ap);
}

/* The level coapd.conf asked for; libcoap itself runs at warning at least,
 * because the reboot workaround reads one of its warnings (reboot.h). */
static int shown_level = COAPD_LOG_INFO;

static void libcoap_line(coap_log_t level, const char *message) {
  reboot_note_line(message);
  if ((int)level <= shown_level)
    coapd_log_always((int)level, "libcoap: %s", message);
}

void coapd_log_setup(int level) {
  shown_level = level;
  coap_set_log_handler(libcoap_line);
  coap_set_log_level((coap_log_t)(level < COAPD_LOG_WARNING ? COAPD_LOG_WARNING : level));
  coap_dtls_set_log_level(level);
}
