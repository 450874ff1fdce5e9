/* Delayed responses (RFC 9148 §4.7): what to do after each answer. */
#include "retry.h"

ec_retry ec_retry_decide(unsigned code, bool has_max_age, uint32_t max_age,
                         uint64_t elapsed_s, uint64_t max_wait_s) {
  ec_retry r = {EC_RETRY_FAILED, 0};

  switch (code) {
  case 204: /* POST success (RFC 9148 §4.5) */
  case 205: /* GET success */
    r.action = EC_RETRY_DONE;
    return r;
  case 401:
  case 403:
    r.action = EC_RETRY_REJECTED;
    return r;
  case 503: {
    /* DLY-3: Max-Age says when to retry; RFC 7252 §5.10.5 default 60 s. */
    uint64_t wait = has_max_age ? max_age : EC_RETRY_DEFAULT_MAX_AGE;
    if (wait < EC_RETRY_MIN_WAIT)
      wait = EC_RETRY_MIN_WAIT;
    if (elapsed_s > max_wait_s || wait > max_wait_s - elapsed_s) {
      r.action = EC_RETRY_PENDING;
      return r;
    }
    r.action = EC_RETRY_WAIT;
    r.wait_s = (uint32_t)wait;
    return r;
  }
  default:
    return r;
  }
}

bool ec_retry_parse_max_age(const uint8_t *val, size_t len, uint32_t *out) {
  uint32_t v = 0;
  if (!out || len > 4 || (len && !val))
    return false;
  for (size_t i = 0; i < len; i++)
    v = (v << 8) | val[i];
  *out = v;
  return true;
}

const char *ec_retry_action_name(ec_retry_action a) {
  switch (a) {
  case EC_RETRY_DONE:
    return "done";
  case EC_RETRY_WAIT:
    return "wait";
  case EC_RETRY_PENDING:
    return "pending";
  case EC_RETRY_REJECTED:
    return "rejected";
  case EC_RETRY_FAILED:
    return "failed";
  case EC_RETRY__MAX:
    break;
  }
  return "?";
}
