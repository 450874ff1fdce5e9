/* CoRE link format (RFC 6690 §2) for EST-coaps discovery (RFC 9148 §4.1),
 * coaps URIs (RFC 7252 §6.2) and the choice of one link per function. */
#include "links.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

typedef struct lp {
  const char *p;
  const char *end;
} lp;

static void skip_ws(lp *s) {
  while (s->p < s->end &&
         (*s->p == ' ' || *s->p == '\t' || *s->p == '\r' || *s->p == '\n'))
    s->p++;
}

/* RFC 6690 parmname: token characters (RFC 2616 §2.2) plus '*' (title*). */
static bool is_token_char(char c) {
  return isalnum((unsigned char)c) || strchr("!#$&+-.^_`|~*", c) != NULL;
}

/* RFC 6690 ptokenchar: visible ASCII except '"', ',', ';', '\\'. */
static bool is_ptoken_char(char c) {
  return c > 0x20 && c < 0x7f && c != '"' && c != ',' && c != ';' && c != '\\';
}

/* Copy a value into dst (cap bytes with NUL); false if it does not fit. */
static bool put_char(char *dst, size_t cap, size_t *n, char c) {
  if (*n + 1 >= cap)
    return false;
  dst[(*n)++] = c;
  dst[*n] = '\0';
  return true;
}

/* A value: quoted-string (RFC 2616 §2.2, with \-escapes) or ptoken. The
 * unquoted text goes to dst (cap bytes); *fits is false if it was cut. */
static est_err parse_value(lp *s, char *dst, size_t cap, bool *fits) {
  size_t n = 0;
  *fits = true;
  dst[0] = '\0';
  if (s->p < s->end && *s->p == '"') {
    s->p++;
    for (;;) {
      if (s->p >= s->end)
        return EST_ERR_MALFORMED;
      char c = *s->p++;
      if (c == '"')
        return EST_OK;
      if (c == '\\') {
        if (s->p >= s->end)
          return EST_ERR_MALFORMED;
        c = *s->p++;
      }
      /* qdtext: no control characters (tab allowed). */
      if (((unsigned char)c < 0x20 && c != '\t') || (unsigned char)c >= 0x7f)
        return EST_ERR_MALFORMED;
      if (*fits && !put_char(dst, cap, &n, c))
        *fits = false;
    }
  }
  if (s->p >= s->end || !is_ptoken_char(*s->p))
    return EST_ERR_MALFORMED;
  while (s->p < s->end && is_ptoken_char(*s->p)) {
    if (*fits && !put_char(dst, cap, &n, *s->p))
      *fits = false;
    s->p++;
  }
  return EST_OK;
}

/* ct="281 287" or ct=40 (RFC 7252 §7.2.1): numbers 0..65535. */
static void parse_ct(const char *v, ec_link *link) {
  while (*v) {
    while (*v == ' ')
      v++;
    if (!*v)
      break;
    unsigned long n = 0;
    size_t digits = 0;
    bool ok = true;
    while (*v && *v != ' ') {
      if (!isdigit((unsigned char)*v) || digits >= 5)
        ok = false;
      else
        n = n * 10 + (unsigned long)(*v - '0');
      digits++;
      v++;
    }
    if (ok && n <= UINT16_MAX && link->ct_count < EC_LINK_CT_MAX)
      link->ct[link->ct_count++] = (uint16_t)n;
  }
}

est_err ec_links_parse(const char *buf, size_t len, ec_link_cb cb, void *arg) {
  ec_link link;
  char name[16], value[EC_LINK_RT_MAX];

  if ((!buf && len) || !cb)
    return EST_ERR_INVALID;
  if (len > EC_LINKS_BODY_MAX)
    return EST_ERR_TOO_LARGE;
  lp s = {buf, buf + len};
  skip_ws(&s);
  if (s.p == s.end)
    return EST_OK; /* an empty link-value-list is valid (RFC 6690 §2) */

  for (;;) {
    bool keep = true, have_rt = false;
    size_t n = 0;
    memset(&link, 0, sizeof link);

    /* "<" URI-Reference ">" */
    if (s.p >= s.end || *s.p != '<')
      return EST_ERR_MALFORMED;
    s.p++;
    while (s.p < s.end && *s.p != '>') {
      char c = *s.p++;
      if (c <= 0x20 || c >= 0x7f || c == '<' || c == '"')
        return EST_ERR_MALFORMED;
      if (keep && !put_char(link.target, sizeof link.target, &n, c))
        keep = false;
    }
    if (s.p >= s.end)
      return EST_ERR_MALFORMED;
    s.p++;
    skip_ws(&s);

    /* *( ";" link-param ) */
    while (s.p < s.end && *s.p == ';') {
      s.p++;
      skip_ws(&s);
      size_t nl = 0;
      bool name_fits = true;
      name[0] = '\0';
      while (s.p < s.end && is_token_char(*s.p)) {
        if (name_fits && !put_char(name, sizeof name, &nl, *s.p))
          name_fits = false;
        s.p++;
      }
      if (nl == 0)
        return EST_ERR_MALFORMED;
      skip_ws(&s);
      if (s.p < s.end && *s.p == '=') {
        bool fits;
        s.p++;
        skip_ws(&s);
        est_err rc = parse_value(&s, value, sizeof value, &fits);
        if (rc != EST_OK)
          return rc;
        /* A long parameter name is none we know: ignore it. */
        if (name_fits && strcasecmp(name, "rt") == 0 && !have_rt) {
          /* Only the first rt counts (RFC 6690 §3.1). */
          have_rt = true;
          if (fits)
            memcpy(link.rt, value, strlen(value) + 1);
          else
            keep = false;
        } else if (name_fits && strcasecmp(name, "ct") == 0 && fits) {
          parse_ct(value, &link);
        }
      }
      skip_ws(&s);
    }

    if (keep && !cb(&link, arg))
      return EST_OK;
    if (s.p == s.end)
      return EST_OK;
    if (*s.p != ',')
      return EST_ERR_MALFORMED;
    s.p++;
    skip_ws(&s);
  }
}

bool ec_link_has_rt(const char *rt, const char *value) {
  size_t vl;
  if (!rt || !value || !(vl = strlen(value)))
    return false;
  const char *p = rt;
  while (*p) {
    while (*p == ' ')
      p++;
    const char *e = p;
    while (*e && *e != ' ')
      e++;
    if ((size_t)(e - p) == vl && memcmp(p, value, vl) == 0)
      return true;
    p = e;
  }
  return false;
}

bool ec_link_is_fn(const ec_link *link, est_fn fn) {
  const est_fn_info *info = proto_fn_info(fn);
  char rt[32];
  if (!link || !info)
    return false;
  /* proto.h keeps the quoted attribute text; build the bare value. */
  int n = snprintf(rt, sizeof rt, "ace.est.%s", info->name);
  return n > 0 && (size_t)n < sizeof rt && ec_link_has_rt(link->rt, rt);
}

/* RFC 3986 §3.3 pchar plus '/', with pct-encoded checked. */
static bool path_ok(const char *p) {
  for (; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '%') {
      if (!isxdigit((unsigned char)p[1]) || !isxdigit((unsigned char)p[2]))
        return false;
      p += 2;
      continue;
    }
    if (!isalnum(c) && !strchr("-._~!$&'()*+,;=:@/", c))
      return false;
  }
  return true;
}

/* No empty, "." or ".." segments: we send the segments as Uri-Path
 * options verbatim (RFC 7252 §6.4) and do no dot-segment removal. */
static bool segments_ok(const char *path) {
  const char *p = path;
  if (!*p)
    return true;
  if (*p != '/')
    return false;
  while (*p == '/') {
    const char *seg = p + 1;
    const char *e = strchr(seg, '/');
    size_t n = e ? (size_t)(e - seg) : strlen(seg);
    if (n == 0)
      return e == NULL && seg == path + 1; /* only "/" alone */
    if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
      return false;
    if (!e)
      break;
    p = e;
  }
  return true;
}

static bool host_char_ok(char c) {
  return isalnum((unsigned char)c) || c == '-' || c == '.' || c == '_' || c == '~';
}

est_err ec_uri_parse(const char *s, ec_uri *out) {
  if (!s || !out)
    return EST_ERR_INVALID;
  memset(out, 0, sizeof *out);
  out->port = EC_COAPS_PORT;
  const char *p = s;

  if (strncasecmp(p, "coaps://", 8) == 0) {
    p += 8;
    size_t n = 0;
    if (*p == '[') {
      const char *e = strchr(p, ']');
      if (!e)
        return EST_ERR_INVALID;
      n = (size_t)(e - p - 1);
      if (n == 0 || n >= sizeof out->host)
        return EST_ERR_INVALID;
      for (size_t i = 1; i <= n; i++)
        if (!isxdigit((unsigned char)p[i]) && p[i] != ':' && p[i] != '.')
          return EST_ERR_INVALID;
      memcpy(out->host, p + 1, n);
      p = e + 1;
    } else {
      while (p[n] && p[n] != ':' && p[n] != '/') {
        if (!host_char_ok(p[n]))
          return EST_ERR_INVALID;
        n++;
      }
      if (n == 0 || n >= sizeof out->host)
        return EST_ERR_INVALID;
      memcpy(out->host, p, n);
      p += n;
    }
    if (*p == ':') {
      unsigned long port = 0;
      size_t digits = 0;
      p++;
      while (isdigit((unsigned char)*p)) {
        port = port * 10 + (unsigned long)(*p - '0');
        if (++digits > 5)
          return EST_ERR_INVALID;
        p++;
      }
      /* An empty port means the default (RFC 3986 §3.2.3). */
      if (digits && (port == 0 || port > 65535))
        return EST_ERR_INVALID;
      if (digits)
        out->port = (uint16_t)port;
    }
    if (*p && *p != '/')
      return EST_ERR_INVALID;
    out->has_authority = true;
  } else {
    /* A scheme other than coaps (coap:, http:) or a network-path
     * reference ("//host") is not something we can use. */
    const char *colon = strchr(p, ':');
    const char *slash = strchr(p, '/');
    if ((colon && (!slash || colon < slash)) || strncmp(p, "//", 2) == 0)
      return EST_ERR_INVALID;
  }

  size_t len = strlen(p);
  bool add_slash = len && p[0] != '/';
  if (len + (add_slash ? 1 : 0) >= sizeof out->path)
    return EST_ERR_INVALID;
  if (add_slash)
    out->path[0] = '/';
  memcpy(out->path + (add_slash ? 1 : 0), p, len + 1);
  if (!path_ok(out->path) || !segments_ok(out->path))
    return EST_ERR_INVALID;
  return EST_OK;
}

unsigned ec_uri_path_segments(const char *path) {
  unsigned n = 0;
  for (const char *p = path; p && *p; p++)
    if (*p == '/' && p[1] && p[1] != '/')
      n++;
  return n;
}

/* The segment before the last one equals @p label. */
static bool label_matches(const char *path, const char *label) {
  const char *last = strrchr(path, '/');
  if (!last || last == path)
    return false;
  const char *prev = last - 1;
  while (prev > path && *prev != '/')
    prev--;
  if (*prev != '/')
    return false;
  size_t n = (size_t)(last - prev - 1);
  return n == strlen(label) && memcmp(prev + 1, label, n) == 0;
}

typedef struct disc_ctx {
  ec_discovery *d;
  const char *label;
  unsigned segs[EST_FN__MAX];
} disc_ctx;

static bool disc_link(const ec_link *link, void *arg) {
  disc_ctx *c = arg;
  bool est = false;
  for (int fn = 0; fn < EST_FN__MAX; fn++) {
    if (!ec_link_is_fn(link, (est_fn)fn))
      continue;
    est = true;
    ec_uri u;
    if (ec_uri_parse(link->target, &u) != EST_OK)
      continue;
    unsigned segs = ec_uri_path_segments(u.path);
    if (segs == 0)
      continue;
    if (c->label) {
      if (c->d->found[fn] || !label_matches(u.path, c->label))
        continue;
    } else if (c->d->found[fn] && segs >= c->segs[fn]) {
      continue;
    }
    c->d->found[fn] = true;
    c->d->uri[fn] = u;
    c->d->link[fn] = *link;
    c->segs[fn] = segs;
  }
  if (est)
    c->d->est_links++;
  return true;
}

est_err ec_discovery_parse(const char *body, size_t len, const char *label,
                           ec_discovery *out) {
  if (!out)
    return EST_ERR_INVALID;
  memset(out, 0, sizeof *out);
  disc_ctx c;
  memset(&c, 0, sizeof c);
  c.d = out;
  c.label = label && label[0] ? label : NULL;
  return ec_links_parse(body, len, disc_link, &c);
}

est_err ec_path_build(const char *root, const char *label, est_fn fn,
                      char *out, size_t out_len) {
  const est_fn_info *info = proto_fn_info(fn);
  if (!root || !info || !out || !out_len)
    return EST_ERR_INVALID;
  size_t rl = strlen(root);
  while (rl && root[rl - 1] == '/')
    rl--;
  const char *lead = (rl == 0 || root[0] == '/') ? "" : "/";
  int n;
  if (label && label[0])
    n = snprintf(out, out_len, "%s%.*s/%s/%s", lead, (int)rl, root, label, info->name);
  else
    n = snprintf(out, out_len, "%s%.*s/%s", lead, (int)rl, root, info->name);
  if (n < 0 || (size_t)n >= out_len)
    return EST_ERR_TOO_LARGE;
  return EST_OK;
}
