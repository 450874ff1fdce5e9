/**
 * @file tick.h
 * @brief When to call each plugin's tick(): pure arithmetic, no clock and
 * no libcoap, so tests/unit/test_tick.c can drive it with a fake clock.
 *
 * Each plugin with a tick has a deadline (CLOCK_MONOTONIC ms). When the
 * loop's timer fires, only the plugins whose deadline has passed are
 * ticked, each gets a new deadline from the delay it returned, and the
 * timer is armed for the earliest deadline. libcoap's own retransmit and
 * async timers are not in here: they make libcoap's epoll fd readable by
 * themselves (docs/libcoap-4.3.1.md §5, variant B), so the loop's wait
 * only has to cover the plugins.
 */
#ifndef COAPD_HOST_TICK_H
#define COAPD_HOST_TICK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A slot that is never due: no tick function, or not loaded. */
#define COAPD_TICK_NEVER UINT64_MAX
/** A requested delay is clamped to this range (ms): 0 would spin the loop,
 *  and plugin.h lets the host call earlier than asked, so a bogus huge
 *  delay costs one wake-up an hour. */
#define COAPD_TICK_MIN_MS 1u
#define COAPD_TICK_MAX_MS 3600000u

/** Call slot @p i's tick at @p now_ms; returns the delay it asks for. */
typedef uint32_t (*coapd_tick_fn)(void *ctx, size_t i, uint64_t now_ms);

/** The deadline after a tick at @p now_ms that asked for @p delay_ms. */
uint64_t coapd_tick_deadline(uint64_t now_ms, uint32_t delay_ms);

/**
 * Tick every slot of @p due (@p n of them) whose deadline is at or before
 * @p now_ms, store its new deadline, and return the earliest deadline of
 * all slots (COAPD_TICK_NEVER if none has one).
 */
uint64_t coapd_tick_run(uint64_t *due, size_t n, uint64_t now_ms,
                        coapd_tick_fn fn, void *ctx);

/**
 * How long to arm the loop's timer at @p now_ms for deadline @p next:
 * 0 means disarm (COAPD_TICK_NEVER), else 1..COAPD_TICK_MAX_MS.
 */
uint32_t coapd_tick_wait(uint64_t next, uint64_t now_ms);

#ifdef __cplusplus
}
#endif

#endif /* COAPD_HOST_TICK_H */
