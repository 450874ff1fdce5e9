/**
 * @file http.h
 * @brief EST over HTTPS (RFC 7030) wire details that server and client
 * share: the operation names, the request path, media types and
 * comma-separated header lists (docs/decisions.md §16, §17), and the
 * multipart/mixed body of a serverkeygen answer (RFC 7030 §4.4.2). Pure
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

/* ---- multipart/mixed (RFC 7030 §4.4.2 serverkeygen answers) ------------ */

/** Longest multipart boundary (RFC 2046 §5.1.1: 1..70 characters). */
#define PROTO_HTTP_BOUNDARY_MAX 70u

/** One body part of a multipart/mixed body: its Content-Type header value
 * (not NUL-terminated, blanks trimmed; len 0 when the part has none, which
 * RFC 2046 §5.1 says means text/plain) and its body, both pointing into the
 * input. Content-Transfer-Encoding is not reported: RFC 8951 says EST
 * bodies are base64 whatever it says. */
typedef struct proto_http_part {
  const char *type;
  size_t type_len;
  const char *body;
  size_t body_len;
} proto_http_part;

/**
 * The boundary parameter of a Content-Type header value such as
 * `multipart/mixed; boundary=est-1234` or `boundary="a b"` (quoted-string,
 * RFC 9110 §5.6.6; parameter name case-insensitive): EST_OK with the
 * boundary copied NUL-terminated into @p out (capacity @p out_len, at least
 * PROTO_HTTP_BOUNDARY_MAX + 1); EST_ERR_MALFORMED when the type is not
 * multipart/mixed (or @p content_type is NULL or over 1024 bytes), a
 * parameter is not name=value, there is no boundary or more than one, it
 * is empty, over 70 characters, or has characters RFC 2046
 * bcharsnospace/bchars forbid (a trailing space included). Blanks around
 * ';' and '=' are allowed. EST_ERR_INVALID when @p out is NULL or
 * @p out_len too small. On failure @p out (if any) holds "".
 */
est_err proto_http_boundary(const char *content_type, char *out, size_t out_len) EST_MUST_CHECK;

/**
 * Split @p body (length @p len) into its parts at "--" @p boundary lines:
 * up to @p max parts into @p parts, *n set to the count. A preamble before
 * the first delimiter and an epilogue after the close delimiter are
 * ignored; delimiter lines end in CRLF (a bare LF is accepted too, for
 * tolerance), may carry trailing blanks (transport padding), and the CRLF
 * before a delimiter belongs to the delimiter, not to the part body. A
 * delimiter starts a line: "--" @p boundary inside a line, or followed by
 * anything but "--", blanks and the line end, is body content. Each part's
 * headers end at the first empty line (which may be the CRLF of the next
 * delimiter: then the body is empty); header names are case-insensitive,
 * folded (continuation) header lines are skipped, so a folded Content-Type
 * reports its first line only.
 *
 * EST_ERR_MALFORMED when there is no first delimiter, no close delimiter
 * ("--boundary--"), no part before it (RFC 2046 wants at least one), a
 * part has no empty line ending its headers, a header line is over 1024
 * bytes, has no ':' or an empty name, or a part has two Content-Type
 * headers; EST_ERR_TOO_LARGE when there are more than @p max parts;
 * EST_ERR_INVALID for NULL arguments (@p parts may be NULL when @p max is
 * 0, @p body when @p len is 0) or a @p boundary that is not 1..70 bchars.
 * *n is 0 on failure. Never reads past @p len (the body is not
 * NUL-terminated).
 */
est_err proto_http_multipart(const char *body, size_t len, const char *boundary,
                             proto_http_part *parts, size_t max, size_t *n) EST_MUST_CHECK;

#endif /* PROTO_HTTP_H */
