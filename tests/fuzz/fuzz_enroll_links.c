/* est-enroll discovery parsing (RFC 6690 link format, RFC 9148 §4.1) on
 * arbitrary bytes: no crash, no overrun, and every result well-formed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/links.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_uri(const ec_uri *u) {
  if (strlen(u->host) >= EC_URI_HOST_MAX || strlen(u->path) >= EC_URI_PATH_MAX)
    abort();
  if (u->has_authority && (!u->host[0] || u->port == 0))
    abort();
  if (u->path[0] && u->path[0] != '/')
    abort();
  if (strstr(u->path, "//") || strchr(u->path, '?') || strchr(u->path, '#'))
    abort();
}

static bool on_link(const ec_link *l, void *arg) {
  size_t *n = arg;
  if (strlen(l->target) >= EC_LINK_TARGET_MAX || strlen(l->rt) >= EC_LINK_RT_MAX ||
      l->ct_count > EC_LINK_CT_MAX)
    abort();
  for (const char *p = l->target; *p; p++)
    if (*p <= 0x20 || *p >= 0x7f || *p == '<' || *p == '>')
      abort();
  ec_uri u;
  if (ec_uri_parse(l->target, &u) == EST_OK)
    check_uri(&u);
  (*n)++;
  return true;
}

static void check_discovery(const ec_discovery *d, const char *label) {
  for (int fn = 0; fn < EST_FN__MAX; fn++) {
    if (!d->found[fn])
      continue;
    check_uri(&d->uri[fn]);
    if (ec_uri_path_segments(d->uri[fn].path) == 0 || !ec_link_is_fn(&d->link[fn], (est_fn)fn))
      abort();
    if (label) {
      /* ROOT/LABEL/FN: the segment before the last is the label. */
      const char *last = strrchr(d->uri[fn].path, '/');
      size_t ll = strlen(label);
      if (!last || (size_t)(last - d->uri[fn].path) < ll + 1 ||
          memcmp(last - ll, label, ll) != 0 || last[-(long)ll - 1] != '/')
        abort();
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t n = 0;
  est_err rc = ec_links_parse((const char *)data, size, on_link, &n);
  if (rc != EST_OK && rc != EST_ERR_MALFORMED && rc != EST_ERR_TOO_LARGE)
    abort();

  ec_discovery d;
  rc = ec_discovery_parse((const char *)data, size, NULL, &d);
  if (rc != EST_OK && rc != EST_ERR_MALFORMED && rc != EST_ERR_TOO_LARGE)
    abort();
  if (d.est_links > n)
    abort();
  check_discovery(&d, NULL);
  rc = ec_discovery_parse((const char *)data, size, "ca2", &d);
  if (rc != EST_OK && rc != EST_ERR_MALFORMED && rc != EST_ERR_TOO_LARGE)
    abort();
  check_discovery(&d, "ca2");

  /* The whole input as a URI, as --server and link targets are parsed. */
  if (size < 512) {
    char s[512];
    memcpy(s, data, size);
    s[size] = '\0';
    ec_uri u;
    if (ec_uri_parse(s, &u) == EST_OK)
      check_uri(&u);
  }
  return 0;
}
