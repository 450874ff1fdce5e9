/**
 * @file reply.h
 * @brief Filling in the CoAP response of an EST request: refusals with
 * their diagnostic, bodies handed to libcoap's block-wise layer, the
 * Block1 echo. Used by handlers.c and async.c; depends on neither.
 */
#ifndef EST_REPLY_H
#define EST_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include "est_plugin.h"
#include "enroll.h"

/** A refusal: the code for @p err (status.h), Size1 with 4.13, Max-Age
 * r->max_age with 5.03, and r->diag (or the error's text) as payload. */
void reply_error(est_req *r, est_err err);

/** A body, or the Block2 block of it the request asks for; with
 * r->record set it is kept (r->rec) for later blocks and repeats. */
est_err reply_owned(est_req *r, unsigned code, const uint8_t *data,
                    size_t len) EST_MUST_CHECK;

/** 2.05 with CA data that lives until the plugin stops. */
est_err reply_borrowed(est_req *r, const uint8_t *data, size_t len) EST_MUST_CHECK;

/** 2.31 Continue for a Block1 block that is not the last. */
void reply_continue(est_req *r, uint32_t num, unsigned szx);

/** The answer of an enrollment: 2.04 with its body, or its refusal. */
void reply_result(est_req *r, const enroll_result *res);

/** The block a later Block2 request of a POST asks for, of the answer
 * @p rec (RFC 7959 §2.4); nothing is recorded. */
est_err reply_block(est_req *r, const reply_rec *rec) EST_MUST_CHECK;

/** Answer a repeated request exactly as @p rec says the first one was
 * answered (dedup.h). While r->record is set, every function above
 * records what it sends into r->rec. */
void reply_replay(est_req *r, const reply_rec *rec);

#endif /* EST_REPLY_H */
