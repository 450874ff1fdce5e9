/**
 * @file retry.h
 * @brief The delayed-response decision (RFC 9148 §4.7, RFC 7252 §5.10.5):
 * a pure function of the response code, Max-Age, the time spent so far and
 * the caller's limit, so it is testable without a network.
 */
#ifndef EC_RETRY_H
#define EC_RETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Max-Age when a 5.03 carries none (RFC 7252 §5.10.5). */
#define EC_RETRY_DEFAULT_MAX_AGE 60u
/** Shortest wait, so Max-Age 0 cannot turn into a busy loop. */
#define EC_RETRY_MIN_WAIT 1u

typedef enum ec_retry_action {
  EC_RETRY_DONE = 0, /**< 2.04/2.05: the answer is here */
  EC_RETRY_WAIT,     /**< 5.03: wait wait_s seconds, then send again */
  EC_RETRY_PENDING,  /**< 5.03, but waiting would pass the limit: give up */
  EC_RETRY_REJECTED, /**< 4.01/4.03: the server refuses, final */
  EC_RETRY_FAILED,   /**< any other code: final */
  EC_RETRY__MAX
} ec_retry_action;

typedef struct ec_retry {
  ec_retry_action action;
  uint32_t wait_s; /**< seconds to wait (EC_RETRY_WAIT only) */
} ec_retry;

/**
 * Decide what follows a response with code @p code (class * 100 + detail,
 * e.g. 503). @p has_max_age / @p max_age describe the Max-Age option;
 * @p elapsed_s is the time since the first request went out, @p max_wait_s
 * the longest the caller will keep trying. A 5.03 is retried only when the
 * whole wait fits: the client must wait at least Max-Age (RFC 7030
 * §4.2.3), so a wait cut short by the limit would be pointless.
 */
ec_retry ec_retry_decide(unsigned code, bool has_max_age, uint32_t max_age,
                         uint64_t elapsed_s, uint64_t max_wait_s);

/**
 * Decode a Max-Age option value: a big-endian uint of 0 to 4 bytes
 * (RFC 7252 §3.2, §5.10.5). false for a longer value, which the caller
 * treats as an absent option (an elective option of bad length is ignored,
 * RFC 7252 §5.4.3).
 */
bool ec_retry_parse_max_age(const uint8_t *val, size_t len, uint32_t *out);

/** A short name for logs ("wait", "pending", ...). */
const char *ec_retry_action_name(ec_retry_action a);

#endif /* EC_RETRY_H */
