/**
 * @file http.h
 * @brief EST over HTTPS (RFC 7030) wire details that server and client
 * share: the operation names, the request path, media types and
 * comma-separated header lists (docs/decisions.md §16, §17). Pure
 * functions on strings: no HTTP library, no GnuTLS, no state.
 */
#ifndef PROTO_HTTP_H
#define PROTO_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "common/est_err.h"
#include "proto/resource.h"

/** Where RFC 7030 §3.2.2 puts the operations. */
#define PROTO_HTTP_PREFIX "/.well-known/est/"

/** Longest request path proto_http_route() looks at. */
#define PROTO_HTTP_PATH_MAX 1024u

/** The RFC 7030 operation of @p fn ("cacerts", "simpleenroll", ...), or
 * NULL for skc, which RFC 7030 has no operation for. */
const char *proto_http_op(est_fn fn);

/**
 * Split PROTO_HTTP_PREFIX "[<label>/]<operation>": EST_OK with *fn, and
 * the label (pointing into @p path, *label_len 0 when there is none);
 * EST_ERR_NOT_FOUND for any other path (a different prefix, an unknown
 * operation, an empty or over-long label, more segments, over
 * PROTO_HTTP_PATH_MAX). The label is not checked against a configuration.
 */
est_err proto_http_route(const char *path, est_fn *fn, const char **label,
                         size_t *label_len) EST_MUST_CHECK;

/** True when the media type of the header value @p value (parameters
 * after ';' ignored, blanks around it allowed, case ignored; RFC 9110
 * §8.3.1) is @p type. NULL is false. */
bool proto_http_type_is(const char *value, const char *type);

/**
 * The next item of a comma-separated header value, blanks around it
 * dropped, empty items skipped: true with *item and *len (pointing into
 * the string) and *cursor moved on; false at the end. Start with *cursor
 * at the value.
 */
bool proto_http_next_item(const char **cursor, const char **item, size_t *len);

#endif /* PROTO_HTTP_H */
