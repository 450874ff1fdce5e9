/* Plugin tick scheduling (tick.h). */
#include "tick.h"

uint64_t coapd_tick_deadline(uint64_t now_ms, uint32_t delay_ms) {
  if (delay_ms < COAPD_TICK_MIN_MS)
    delay_ms = COAPD_TICK_MIN_MS;
  if (delay_ms > COAPD_TICK_MAX_MS)
    delay_ms = COAPD_TICK_MAX_MS;
  /* Saturate rather than wrap into the past (and never reach NEVER). */
  if (now_ms >= COAPD_TICK_NEVER - 1 - delay_ms)
    return COAPD_TICK_NEVER - 1;
  return now_ms + delay_ms;
}

uint64_t coapd_tick_run(uint64_t *due, size_t n, uint64_t now_ms,
                        coapd_tick_fn fn, void *ctx) {
  uint64_t next = COAPD_TICK_NEVER;
  for (size_t i = 0; i < n; i++) {
    if (due[i] != COAPD_TICK_NEVER && due[i] <= now_ms)
      due[i] = coapd_tick_deadline(now_ms, fn(ctx, i, now_ms));
    if (due[i] < next)
      next = due[i];
  }
  return next;
}

uint32_t coapd_tick_wait(uint64_t next, uint64_t now_ms) {
  if (next == COAPD_TICK_NEVER)
    return 0;
  if (next <= now_ms)
    return COAPD_TICK_MIN_MS; /* overdue: as soon as possible, not never */
  uint64_t d = next - now_ms;
  return d > COAPD_TICK_MAX_MS ? COAPD_TICK_MAX_MS : (uint32_t)d;
}
