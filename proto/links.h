/**
 * @file links.h
 * @brief CoRE link format (RFC 6690) for EST-coaps discovery (RFC 9148
 * §4.1), coaps URIs, and the choice of one resource per EST function.
 *
 * Pure functions on bounded buffers; no allocation, no network. This is
 * what fuzz_enroll_links exercises.
 */
#ifndef EC_LINKS_H
#define EC_LINKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/est_err.h"
#include "resource.h"

#define EC_LINKS_BODY_MAX 65536u /**< cap on a discovery document */
#define EC_LINK_TARGET_MAX 256u  /**< longest URI-Reference we keep */
#define EC_LINK_RT_MAX 256u      /**< longest rt value we keep */
#define EC_LINK_CT_MAX 8u        /**< ct values kept per link */
#define EC_URI_HOST_MAX 256u
#define EC_URI_PATH_MAX 256u
#define EC_COAPS_PORT 5684u      /**< RFC 7252 §12.7 */

/** One link-value; strings are NUL-terminated and unquoted. */
typedef struct ec_link {
  char target[EC_LINK_TARGET_MAX]; /**< between '<' and '>' */
  char rt[EC_LINK_RT_MAX];         /**< rt value, "" when absent */
  uint16_t ct[EC_LINK_CT_MAX];     /**< ct values (RFC 7252 §7.2.1) */
  size_t ct_count;
} ec_link;

/** Called once per link; return false to stop early (not an error). */
typedef bool (*ec_link_cb)(const ec_link *link, void *arg);

/**
 * Parse an application/link-format body. Whitespace between elements is
 * tolerated (RFC 9148 §4.1 prints links on separate lines). Links whose
 * target or rt does not fit are skipped, as are ct values past
 * EC_LINK_CT_MAX or that are not a number up to 65535. EST_ERR_MALFORMED on
 * a syntax error (links before it have been reported), EST_ERR_TOO_LARGE
 * over EC_LINKS_BODY_MAX.
 */
est_err ec_links_parse(const char *buf, size_t len, ec_link_cb cb,
                       void *arg) EST_MUST_CHECK;

/** true when the space-separated rt list @p rt contains @p value. */
bool ec_link_has_rt(const char *rt, const char *value);

/** true when @p link has the rt of EST function @p fn ("ace.est.sen",
 * RFC 9148 §8.2). */
bool ec_link_is_fn(const ec_link *link, est_fn fn);

/** A URI split into what est-enroll needs. */
typedef struct ec_uri {
  bool has_authority;          /**< "coaps://host[:port]" present */
  char host[EC_URI_HOST_MAX];  /**< without brackets for IPv6 */
  uint16_t port;               /**< EC_COAPS_PORT when not given */
  char path[EC_URI_PATH_MAX];  /**< "/a/b", percent-encoded, "" if none */
} ec_uri;

/**
 * Parse "coaps://HOST[:PORT][/PATH]" or a reference "/PATH" (a relative
 * "a/b" is taken as "/a/b", RFC 6690 §2.1 resolves against the origin).
 * No query, fragment, userinfo or other scheme. EST_ERR_INVALID otherwise.
 */
est_err ec_uri_parse(const char *s, ec_uri *out) EST_MUST_CHECK;

/** Number of path segments ("/est/crts" has 2). */
unsigned ec_uri_path_segments(const char *path);

/** The EST resources chosen from one discovery document. */
typedef struct ec_discovery {
  bool found[EST_FN__MAX];
  ec_uri uri[EST_FN__MAX];    /**< where to send each function */
  ec_link link[EST_FN__MAX];  /**< the link it came from */
  size_t est_links;           /**< links with an ace.est.* rt */
} ec_discovery;

/**
 * Pick one link per EST function (rt ace.est.crts, ...; RFC 9148 §8.2)
 * from @p body. With @p label, the link whose path is ROOT/LABEL/FN (the
 * segment before the last equals the label); without, the link with the
 * fewest path segments, so an unlabelled one wins over labelled ones.
 * Links that are not coaps or not parseable as a URI are ignored. The
 * result is valid even when the parse fails half-way (EST_ERR_MALFORMED).
 */
est_err ec_discovery_parse(const char *body, size_t len, const char *label,
                           ec_discovery *out) EST_MUST_CHECK;

/**
 * The path of @p fn under @p root (e.g. "/est" or "/.well-known/est") with
 * an optional @p label: "/est/LABEL/sen". EST_ERR_TOO_LARGE if it does not
 * fit in @p out.
 */
est_err ec_path_build(const char *root, const char *label, est_fn fn,
                      char *out, size_t out_len) EST_MUST_CHECK;

#endif /* EC_LINKS_H */
