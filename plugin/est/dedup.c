/* Answers kept for repeated CONs (dedup.h). */
#include "dedup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pki.h"

void reply_rec_clear(reply_rec *rec) {
  if (!rec)
    return;
  /* A keygen answer holds a private key. */
  pki_secret_free(rec->body, rec->len);
  memset(rec, 0, sizeof *rec);
}

static void entry_free(dedup *d, dedup_entry *e) {
  if (!e->used)
    return;
  if (d->budget)
    d->budget->used -= e->rec.len <= d->budget->used ? e->rec.len : d->budget->used;
  reply_rec_clear(&e->rec);
  memset(e, 0, sizeof *e);
}

void dedup_init(dedup *d, dedup_budget *budget, size_t cap) {
  memset(d, 0, sizeof *d);
  d->budget = budget;
  /* Off (0) still keeps the latest answer, for its Block2 blocks. */
  d->replay = cap > 0;
  d->cap = cap == 0 ? 1 : cap > DEDUP_SESSION_MAX ? DEDUP_SESSION_MAX : cap;
}

/* In use and not past EXCHANGE_LIFETIME; an expired entry is freed. */
static bool live(dedup *d, dedup_entry *e, long long now) {
  if (!e->used)
    return false;
  if (now - e->at >= DEDUP_LIFETIME_S) {
    entry_free(d, e);
    return false;
  }
  return true;
}

const reply_rec *dedup_find(dedup *d, uint16_t mid, const uint8_t *token, size_t token_len,
                            long long now) {
  for (size_t i = 0; d->replay && i < d->cap; i++) {
    dedup_entry *e = &d->e[i];
    if (live(d, e, now) && e->mid == mid && e->token_len == token_len &&
        (token_len == 0 || memcmp(e->token, token, token_len) == 0))
      return &e->rec;
  }
  return NULL;
}

const reply_rec *dedup_find_body(dedup *d, const body_key *k, long long now) {
  dedup_entry *best = NULL;
  int best_score = -1;
  for (size_t i = 0; i < d->cap; i++) {
    dedup_entry *e = &d->e[i];
    if (!live(d, e, now) || e->rec.kind != REPLY_OWNED || e->rec.route != k->owner)
      continue;
    /* The same Request-Tag (RFC 9175 §3.2.1) names the body best, then
     * the same token, then the newest answer to the resource. */
    int score = k->tagged && body_key_same(&e->rec.b1, k) ? 2
                : e->token_len == k->token_len &&
                        (k->token_len == 0 || memcmp(e->token, k->token, k->token_len) == 0)
                    ? 1
                    : 0;
    if (score > best_score || (score == best_score && e->seq > best->seq)) {
      best = e;
      best_score = score;
    }
  }
  return best ? &best->rec : NULL;
}

const reply_rec *dedup_find_final(dedup *d, const body_key *k, uint32_t num, long long now) {
  dedup_entry *best = NULL;
  for (size_t i = 0; d->replay && i < d->cap; i++) {
    dedup_entry *e = &d->e[i];
    if (live(d, e, now) && e->rec.b1_end == num + 1 && body_key_same(&e->rec.b1, k) &&
        (!best || e->seq > best->seq))
      best = e;
  }
  return best ? &best->rec : NULL;
}

/* Free the oldest entries of this session until @p need more bytes fit. */
static void make_room(dedup *d, size_t need) {
  while (d->budget && d->budget->max - d->budget->used < need) {
    dedup_entry *oldest = NULL;
    for (size_t i = 0; i < d->cap; i++)
      if (d->e[i].used && d->e[i].rec.len && (!oldest || d->e[i].at < oldest->at))
        oldest = &d->e[i];
    if (!oldest)
      return;
    entry_free(d, oldest);
  }
}

void dedup_put(dedup *d, uint16_t mid, const uint8_t *token, size_t token_len, long long now,
               reply_rec *rec) {
  if (rec->kind == REPLY_NONE || token_len > DEDUP_TOKEN_MAX ||
      (!d->replay && rec->kind != REPLY_OWNED)) {
    reply_rec_clear(rec);
    return;
  }
  /* The same exchange answered again (a separate response) replaces it. */
  dedup_entry *e = NULL;
  for (size_t i = 0; i < d->cap && !e; i++)
    if (d->e[i].used && d->e[i].mid == mid && d->e[i].token_len == token_len &&
        (token_len == 0 || memcmp(d->e[i].token, token, token_len) == 0))
      e = &d->e[i];
  if (!e) {
    e = &d->e[d->next];
    d->next = (d->next + 1) % d->cap;
  }
  entry_free(d, e);
  if (rec->len && d->budget) {
    make_room(d, rec->len);
    if (d->budget->max - d->budget->used < rec->len) {
      /* Over budget: remember the exchange, not the bytes. */
      reply_rec keep = *rec;
      keep.body = NULL;
      reply_rec_clear(rec);
      rec->route = keep.route;
      rec->separate = keep.separate;
      rec->b1_end = keep.b1_end;
      rec->b1 = keep.b1;
      rec->kind = REPLY_ERROR;
      rec->err = EST_ERR_UNAVAILABLE;
      rec->max_age = ENROLL_RETRY_SOON;
      snprintf(rec->diag, sizeof rec->diag, "answer not kept, retry later");
    } else {
      d->budget->used += rec->len;
    }
  }
  e->used = true;
  e->mid = mid;
  if (token_len)
    memcpy(e->token, token, token_len);
  e->token_len = token_len;
  e->at = now;
  e->seq = ++d->seq;
  e->rec = *rec;
  memset(rec, 0, sizeof *rec);
}

void dedup_clear(dedup *d) {
  for (size_t i = 0; i < DEDUP_SESSION_MAX; i++)
    entry_free(d, &d->e[i]);
}
