/**
 * @file dedup.h
 * @brief The answers of recent CON requests of one DTLS session, kept so a
 * repeat (same Message ID: the device did not get our ACK) gets the same
 * answer again and nothing runs twice (RFC 7252 §4.5, docs/decisions.md
 * §12). Bounded in entries per session and in bytes per plugin. Pure: no
 * libcoap.
 */
#ifndef EST_DEDUP_H
#define EST_DEDUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "body.h"
#include "common/est_err.h"
#include "enroll.h"

/** EXCHANGE_LIFETIME (RFC 7252 §4.8.2): how long a repeat can arrive. */
#define DEDUP_LIFETIME_S 247
/** Most answers kept per session; a session has one exchange at a time
 * (NSTART = 1, RFC 9148 §6), so a few cover every repeat. */
#define DEDUP_SESSION_MAX 8
#define DEDUP_TOKEN_MAX 8

/** How an answer was made, so it can be made again (reply.c). */
typedef enum reply_kind {
  REPLY_NONE = 0,  /**< nothing recorded */
  REPLY_ERROR,     /**< reply_error(err) with diag and max_age */
  REPLY_OWNED,     /**< reply_owned(code, body) in Content-Format cf */
  REPLY_CONTINUE,  /**< reply_continue(num, szx): 2.31 */
  REPLY_SEPARATE   /**< an empty ACK; the answer comes separately */
} reply_kind;

typedef struct reply_rec {
  reply_kind kind;
  est_err err;
  unsigned code;
  unsigned cf;
  unsigned max_age;
  uint32_t num;
  unsigned szx;
  char diag[EST_DIAG_MAX];
  uint8_t *body; /**< REPLY_OWNED: a copy (malloc), wiped when freed */
  size_t len;
  const void *route;  /**< the resource answered, for Block2 follow-ups */
  bool separate;      /**< it went out as a separate response */
  uint32_t b1_end;    /**< 1 + NUM of the final Block1 block answered, or 0 */
  body_key b1;        /**< the request's resource, Request-Tag and token */
} reply_rec;

/** The byte budget all sessions of a plugin share. */
typedef struct dedup_budget {
  size_t used;
  size_t max;
} dedup_budget;

typedef struct dedup_entry {
  bool used;
  uint16_t mid;
  uint8_t token[DEDUP_TOKEN_MAX];
  size_t token_len;
  long long at; /**< monotonic seconds when answered */
  uint64_t seq; /**< order of answers (at has a one-second grain) */
  reply_rec rec;
} dedup_entry;

typedef struct dedup {
  dedup_budget *budget;
  size_t cap;   /**< entries in use at most, 1..DEDUP_SESSION_MAX */
  bool replay;  /**< repeats are answered again (dedup_entries > 0) */
  size_t next;  /**< ring position */
  uint64_t seq; /**< the last entry's seq */
  dedup_entry e[DEDUP_SESSION_MAX];
} dedup;

void dedup_init(dedup *d, dedup_budget *budget, size_t cap);

/** The answer recorded for (@p mid, @p token) within DEDUP_LIFETIME_S of
 * @p now, or NULL. */
const reply_rec *dedup_find(dedup *d, uint16_t mid, const uint8_t *token, size_t token_len,
                            long long now);

/** The answer with a body (REPLY_OWNED) to the resource k->owner that a
 * later Block2 request of a POST asks a block of (RFC 7959 §2.4): the one
 * to the same Request-Tag, else to the same token, else the newest. */
const reply_rec *dedup_find_body(dedup *d, const body_key *k, long long now);

/** The answer to block @p num, the final one, of the Block1 transfer
 * @p k: that block sent again as a new message gets it again. */
const reply_rec *dedup_find_final(dedup *d, const body_key *k, uint32_t num, long long now);

/**
 * Keep @p rec (consumed: its body now belongs to the cache, or is freed)
 * as the answer to (@p mid, @p token). The oldest entry makes room; when
 * the plugin's byte budget is spent even so, the body is not kept and a
 * repeat hears "retry later" (5.03) instead of being run again.
 */
void dedup_put(dedup *d, uint16_t mid, const uint8_t *token, size_t token_len, long long now,
               reply_rec *rec);

/** Free every entry (the session is going away). */
void dedup_clear(dedup *d);

/** Free what @p rec holds and reset it. */
void reply_rec_clear(reply_rec *rec);

#endif /* EST_DEDUP_H */
