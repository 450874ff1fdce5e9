/* Unit tests for the host's plugin tick schedule (host/tick.c), driven by a
 * fake clock: a plugin that asks for 10 s is ticked every 10 s, however
 * often another plugin ticks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "host/tick.h"

#define SLOTS 3

/* Fake plugins: each asks for a fixed delay and records its ticks. */
typedef struct fake {
  uint32_t delay[SLOTS];
  unsigned calls[SLOTS];
  uint64_t last[SLOTS];
  uint64_t *due; /* to check no slot runs before its deadline */
} fake;

static uint32_t fake_tick(void *ctx, size_t i, uint64_t now_ms) {
  fake *f = ctx;
  assert_true(i < SLOTS);
  assert_true(f->due[i] <= now_ms);
  f->calls[i]++;
  f->last[i] = now_ms;
  return f->delay[i];
}

static void test_deadline(void **state) {
  (void)state;
  assert_int_equal(coapd_tick_deadline(1000, 10000), 11000);
  assert_int_equal(coapd_tick_deadline(1000, 0), 1000 + COAPD_TICK_MIN_MS);
  assert_int_equal(coapd_tick_deadline(1000, 1), 1001);
  assert_int_equal(coapd_tick_deadline(0, COAPD_TICK_MAX_MS),
                   COAPD_TICK_MAX_MS);
  assert_int_equal(coapd_tick_deadline(0, UINT32_MAX), COAPD_TICK_MAX_MS);
  /* Near the end of time it saturates below NEVER instead of wrapping. */
  assert_true(coapd_tick_deadline(UINT64_MAX - 5, 10) == COAPD_TICK_NEVER - 1);
  assert_true(coapd_tick_deadline(UINT64_MAX, 10) == COAPD_TICK_NEVER - 1);
}

static void test_wait(void **state) {
  (void)state;
  assert_int_equal(coapd_tick_wait(COAPD_TICK_NEVER, 5), 0); /* disarm */
  assert_int_equal(coapd_tick_wait(5, 5), COAPD_TICK_MIN_MS); /* due now */
  assert_int_equal(coapd_tick_wait(4, 5), COAPD_TICK_MIN_MS); /* overdue */
  assert_int_equal(coapd_tick_wait(10005, 5), 10000);
  assert_int_equal(coapd_tick_wait(5 + 2 * (uint64_t)COAPD_TICK_MAX_MS, 5),
                   COAPD_TICK_MAX_MS);
}

/* Run the loop as host/loop.c does: sleep until the earliest deadline. */
static void test_schedule(void **state) {
  (void)state;
  uint64_t due[SLOTS] = {0, 0, COAPD_TICK_NEVER}; /* slot 2: no tick */
  fake f;
  memset(&f, 0, sizeof f);
  f.delay[0] = 10000; /* est_coaps.so */
  f.delay[1] = 200;   /* testplug */
  f.due = due;
  uint64_t now = 0, wakeups = 0;
  while (now <= 30000) {
    uint64_t next = coapd_tick_run(due, SLOTS, now, fake_tick, &f);
    uint32_t wait = coapd_tick_wait(next, now);
    assert_true(wait > 0);
    now += wait;
    wakeups++;
  }
  /* t = 0, 10000, 20000, 30000; not once a second. */
  assert_int_equal(f.calls[0], 4);
  assert_int_equal(f.last[0], 30000);
  assert_int_equal(f.calls[1], 151);
  assert_int_equal(f.calls[2], 0);
  assert_true(due[2] == COAPD_TICK_NEVER);
  /* Every wake-up ticked somebody: no idle polling. */
  assert_int_equal(wakeups, 151);

  /* Alone, the 10 s plugin wakes the loop every 10 s. */
  uint64_t one[1] = {0};
  fake g;
  memset(&g, 0, sizeof g);
  g.delay[0] = 10000;
  g.due = one;
  uint64_t next = coapd_tick_run(one, 1, 0, fake_tick, &g);
  assert_int_equal(next, 10000);
  assert_int_equal(coapd_tick_wait(next, 0), 10000);
  /* A late timer (the loop was busy) ticks once and starts over. */
  next = coapd_tick_run(one, 1, 10750, fake_tick, &g);
  assert_int_equal(g.calls[0], 2);
  assert_int_equal(next, 20750);
  /* Woken early (not due yet): nobody is ticked. */
  next = coapd_tick_run(one, 1, 20000, fake_tick, &g);
  assert_int_equal(g.calls[0], 2);
  assert_int_equal(coapd_tick_wait(next, 20000), 750);
}

static void test_nothing_to_tick(void **state) {
  (void)state;
  uint64_t due[2] = {COAPD_TICK_NEVER, COAPD_TICK_NEVER};
  fake f;
  memset(&f, 0, sizeof f);
  f.due = due;
  uint64_t next = coapd_tick_run(due, 2, 123, fake_tick, &f);
  assert_true(next == COAPD_TICK_NEVER);
  assert_int_equal(coapd_tick_wait(next, 123), 0);
  assert_true(coapd_tick_run(due, 0, 123, fake_tick, &f) == COAPD_TICK_NEVER);
  assert_int_equal(f.calls[0] + f.calls[1], 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_deadline),
      cmocka_unit_test(test_wait),
      cmocka_unit_test(test_schedule),
      cmocka_unit_test(test_nothing_to_tick),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
