/* One log line per event on stderr: `2025-01-02T03:04:05.678Z notice msg`.
 * libcoap's level is the one process-wide level (libcoap's log handler has
 * no user pointer), so coapd filters against coap_get_log_level() and keeps
 * no state of its own. */
#include "coapd.h"
#include "reboot.h"

#include <stdio.h>
#include <string.h>
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

/* Compose the whole line first so it reaches stderr in one write(). */
__attribute__((format(printf, 3, 0))) static void
emit(int level, const char *prefix, const char *fmt, va_list ap) {
  char line[LOG_LINE_MAX];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
  int k = snprintf(line + n, sizeof line - n, ".%03ldZ %s %s%s",
                   ts.tv_nsec / 1000000L, level_name(level),
                   prefix ? prefix : "", prefix ? " " : "");
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
  line[n++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, n);
  (void)w;
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
