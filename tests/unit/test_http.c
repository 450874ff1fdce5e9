/* RFC 7030 wire details (proto/http.h, docs/decisions.md §16, §17). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/http.h"

static void test_ops(void **state) {
  (void)state;
  assert_string_equal(proto_http_op(EST_FN_CRTS), "cacerts");
  assert_string_equal(proto_http_op(EST_FN_SEN), "simpleenroll");
  assert_string_equal(proto_http_op(EST_FN_SREN), "simplereenroll");
  assert_string_equal(proto_http_op(EST_FN_ATT), "csrattrs");
  assert_string_equal(proto_http_op(EST_FN_SKG), "serverkeygen");
  assert_null(proto_http_op(EST_FN_SKC)); /* no RFC 7030 operation */
  assert_null(proto_http_op(EST_FN__MAX));
}

static void test_route(void **state) {
  (void)state;
  est_fn fn;
  const char *l;
  size_t n;
  for (int i = 0; i < EST_FN__MAX; i++) {
    const char *op = proto_http_op((est_fn)i);
    if (!op)
      continue;
    char path[128];
    snprintf(path, sizeof path, "/.well-known/est/%s", op);
    assert_int_equal(proto_http_route(path, &fn, &l, &n), EST_OK);
    assert_int_equal(fn, i);
    assert_null(l);
    assert_int_equal(n, 0);
    snprintf(path, sizeof path, "/.well-known/est/arbitraryLabel1/%s", op);
    assert_int_equal(proto_http_route(path, &fn, &l, &n), EST_OK);
    assert_int_equal(fn, i);
    assert_int_equal(n, strlen("arbitraryLabel1"));
    assert_memory_equal(l, "arbitraryLabel1", n);
  }
  const char *bad[] = {
      "/.well-known/est/",        "/.well-known/est/fullcmc", "/est/cacerts",
      "/.well-known/est//cacerts", "/.well-known/est/a/b/cacerts",
      "/.well-known/est/cacerts/", "/.well-known/est/CACERTS", "/.well-known/estcacerts",
      "/.well-known/est/simpleenroll?x", "", "/.well-known/est/skc",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(proto_http_route(bad[i], &fn, &l, &n), EST_ERR_NOT_FOUND);
  char label[PROTO_LABEL_MAX + 2];
  memset(label, 'a', sizeof label - 1);
  label[sizeof label - 1] = '\0';
  char path[256];
  snprintf(path, sizeof path, "/.well-known/est/%s/cacerts", label);
  assert_int_equal(proto_http_route(path, &fn, &l, &n), EST_ERR_NOT_FOUND);
  label[PROTO_LABEL_MAX] = '\0';
  snprintf(path, sizeof path, "/.well-known/est/%s/cacerts", label);
  assert_int_equal(proto_http_route(path, &fn, &l, &n), EST_OK);
  assert_int_equal(proto_http_route(NULL, &fn, &l, &n), EST_ERR_NOT_FOUND);
}

static void test_type(void **state) {
  (void)state;
  assert_true(proto_http_type_is("application/pkcs10", "application/pkcs10"));
  assert_true(proto_http_type_is(" Application/PKCS10 ", "application/pkcs10"));
  assert_true(proto_http_type_is("application/pkcs10; charset=x", "application/pkcs10"));
  assert_true(proto_http_type_is("application/pkcs10;x", "application/pkcs10"));
  assert_false(proto_http_type_is("application/pkcs10x", "application/pkcs10"));
  assert_false(proto_http_type_is("application/pkcs7-mime", "application/pkcs10"));
  assert_false(proto_http_type_is("", "application/pkcs10"));
  assert_false(proto_http_type_is(NULL, "application/pkcs10"));
}

static void test_items(void **state) {
  (void)state;
  const char *v = " MIIB,, MIIC ,\t,MIID\t", *it;
  size_t n;
  const char *want[] = {"MIIB", "MIIC", "MIID"};
  for (int i = 0; i < 3; i++) {
    assert_true(proto_http_next_item(&v, &it, &n));
    assert_int_equal(n, strlen(want[i]));
    assert_memory_equal(it, want[i], n);
  }
  assert_false(proto_http_next_item(&v, &it, &n));
  v = " , ,\t";
  assert_false(proto_http_next_item(&v, &it, &n));
  v = "";
  assert_false(proto_http_next_item(&v, &it, &n));
}

/* ---- multipart/mixed ------------------------------------------------------ */

static void test_boundary(void **state) {
  (void)state;
  char b[PROTO_HTTP_BOUNDARY_MAX + 1];
  /* What our own server sends (plugin/est/https.c ok_keygen). */
  assert_int_equal(proto_http_boundary("multipart/mixed; boundary=est-coaps-serverkeygen-boundary",
                                       b, sizeof b),
                   EST_OK);
  assert_string_equal(b, "est-coaps-serverkeygen-boundary");
  const struct {
    const char *ct, *want;
  } ok[] = {
      {"Multipart/Mixed;BOUNDARY=est-1234", "est-1234"},
      {" multipart/mixed ; charset=x ; boundary = \"a b:c\" ", "a b:c"},
      {"multipart/mixed; boundary=\"a\\\"b\"", NULL}, /* '"' is no bchar */
      {"multipart/mixed; x=\"; boundary=no\"; boundary=yes", "yes"},
      {"multipart/mixed;;boundary=x;", "x"},
      {"multipart/mixed; boundary=\"\\a\\(b)\"", "a(b)"},
      {"multipart/mixed; boundary=\"'()+_,-./:=? x\"", "'()+_,-./:=? x"},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    est_err rc = proto_http_boundary(ok[i].ct, b, sizeof b);
    if (!ok[i].want) {
      assert_int_equal(rc, EST_ERR_MALFORMED);
      assert_string_equal(b, "");
      continue;
    }
    assert_int_equal(rc, EST_OK);
    assert_string_equal(b, ok[i].want);
  }
  const char *bad[] = {
      "multipart/related; boundary=x",     "multipart/mixedx; boundary=x",
      "multipart/mixed",                   "multipart/mixed;",
      "multipart/mixed; boundary=",        "multipart/mixed; boundary=\"\"",
      "multipart/mixed; boundary=\"x",     "multipart/mixed; boundary=\"x \"",
      "multipart/mixed; boundary=a*b",     "multipart/mixed; boundary=a/b",
      "multipart/mixed; boundary=x; boundary=x", "multipart/mixed; boundary",
      "multipart/mixed; =x",               "multipart/mixed boundary=x",
      "multipart/mixed; boundary=\"a\tb\"", "multipart/mixed; boundary=\"a\\",
      "multipart/mixed; boundary=x y",     "application/pkcs7-mime; boundary=x",
      "",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(proto_http_boundary(bad[i], b, sizeof b), EST_ERR_MALFORMED);
    assert_string_equal(b, "");
  }
  assert_int_equal(proto_http_boundary(NULL, b, sizeof b), EST_ERR_MALFORMED);
  assert_int_equal(proto_http_boundary("multipart/mixed; boundary=x", NULL, 0), EST_ERR_INVALID);
  assert_int_equal(proto_http_boundary("multipart/mixed; boundary=x", b, PROTO_HTTP_BOUNDARY_MAX),
                   EST_ERR_INVALID);

  /* 70 characters are the most (RFC 2046 §5.1.1), as token or quoted. */
  char ct[2048], v[PROTO_HTTP_BOUNDARY_MAX + 2];
  memset(v, 'x', sizeof v - 1);
  v[PROTO_HTTP_BOUNDARY_MAX] = '\0';
  snprintf(ct, sizeof ct, "multipart/mixed; boundary=%s", v);
  assert_int_equal(proto_http_boundary(ct, b, sizeof b), EST_OK);
  assert_string_equal(b, v);
  snprintf(ct, sizeof ct, "multipart/mixed; boundary=\"%s\"", v);
  assert_int_equal(proto_http_boundary(ct, b, sizeof b), EST_OK);
  v[PROTO_HTTP_BOUNDARY_MAX] = 'x';
  v[PROTO_HTTP_BOUNDARY_MAX + 1] = '\0';
  snprintf(ct, sizeof ct, "multipart/mixed; boundary=%s", v);
  assert_int_equal(proto_http_boundary(ct, b, sizeof b), EST_ERR_MALFORMED);
  snprintf(ct, sizeof ct, "multipart/mixed; boundary=\"%s\"", v);
  assert_int_equal(proto_http_boundary(ct, b, sizeof b), EST_ERR_MALFORMED);
  /* A header value over 1024 bytes is refused before it is looked at. */
  size_t pre = (size_t)snprintf(ct, sizeof ct, "multipart/mixed; boundary=x;");
  memset(ct + pre, ' ', 1024 - pre);
  ct[1024] = '\0';
  assert_int_equal(proto_http_boundary(ct, b, sizeof b), EST_OK);
  ct[1024] = ' ';
  ct[1025] = '\0';
  assert_int_equal(proto_http_boundary(ct, b, sizeof b), EST_ERR_MALFORMED);
}

/* proto_http_multipart() on a string literal, parts into @p p. */
static est_err split(const char *body, const char *b, proto_http_part *p, size_t max, size_t *n) {
  return proto_http_multipart(body, strlen(body), b, p, max, n);
}

static void assert_part(const proto_http_part *p, const char *type, const char *body) {
  assert_int_equal(p->type_len, strlen(type));
  if (p->type_len)
    assert_memory_equal(p->type, type, p->type_len);
  assert_int_equal(p->body_len, strlen(body));
  if (p->body_len)
    assert_memory_equal(p->body, body, p->body_len);
}

#define SKG "est-coaps-serverkeygen-boundary"

static void test_multipart_own(void **state) {
  (void)state;
  /* Byte for byte what plugin/est/https.c ok_keygen() writes. */
  const char *body = "--" SKG "\r\n"
                     "Content-Type: application/pkcs8\r\n"
                     "Content-Transfer-Encoding: base64\r\n\r\nMIIKEY==\r\n"
                     "--" SKG "\r\n"
                     "Content-Type: application/pkcs7-mime; smime-type=certs-only\r\n"
                     "Content-Transfer-Encoding: base64\r\n\r\nMIICERT\r\n"
                     "--" SKG "--\r\n";
  char b[PROTO_HTTP_BOUNDARY_MAX + 1];
  assert_int_equal(proto_http_boundary("multipart/mixed; boundary=" SKG, b, sizeof b), EST_OK);
  proto_http_part p[2];
  size_t n = 99;
  assert_int_equal(split(body, b, p, 2, &n), EST_OK);
  assert_int_equal(n, 2);
  assert_part(&p[0], "application/pkcs8", "MIIKEY==");
  assert_part(&p[1], "application/pkcs7-mime; smime-type=certs-only", "MIICERT");
  assert_true(p[0].body >= body && p[1].body + p[1].body_len <= body + strlen(body));

  /* One part fewer than there are: too many parts, and *n is 0. */
  n = 99;
  assert_int_equal(split(body, b, p, 1, &n), EST_ERR_TOO_LARGE);
  assert_int_equal(n, 0);
  assert_int_equal(split(body, b, NULL, 0, &n), EST_ERR_TOO_LARGE);

  /* Cut anywhere before the close delimiter ends, it is truncated; the
   * body is not NUL-terminated, so a cut copy must do. */
  size_t len = strlen(body);
  char *cut = malloc(len);
  assert_non_null(cut);
  memcpy(cut, body, len);
  for (size_t i = 0; i + 2 < len; i++)
    assert_int_equal(proto_http_multipart(cut, i, b, p, 2, &n), EST_ERR_MALFORMED);
  /* Without the final CRLF it is still complete (no epilogue). */
  assert_int_equal(proto_http_multipart(cut, len - 2, b, p, 2, &n), EST_OK);
  assert_int_equal(n, 2);
  free(cut);
}

static void test_multipart_tolerant(void **state) {
  (void)state;
  proto_http_part p[4];
  size_t n;
  /* Preamble and epilogue (RFC 2046 §5.1.1), transport padding, header
   * names in any case, a quoted boundary with a space. */
  assert_int_equal(split("This is a preamble.\r\n--b\r\nwith --a b in it\r\n"
                         "--a b \t\r\ncontent-type:  application/pkcs8 \r\n\r\nK1\r\nK2\r\n"
                         "--a b\r\nCONTENT-TYPE:application/pkcs7-mime\r\n\r\nC\r\n"
                         "--a b-- \r\nThis is the epilogue.\r\n--a b\r\n",
                         "a b", p, 4, &n),
                   EST_OK);
  assert_int_equal(n, 2);
  assert_part(&p[0], "application/pkcs8", "K1\r\nK2");
  assert_part(&p[1], "application/pkcs7-mime", "C");

  /* LF only, as some servers write. */
  assert_int_equal(split("--x\nContent-Type: a/b\n\nbody\nline\n--x\nContent-Type: c/d\n\n"
                         "two\n--x--\n",
                         "x", p, 4, &n),
                   EST_OK);
  assert_int_equal(n, 2);
  assert_part(&p[0], "a/b", "body\nline");
  assert_part(&p[1], "c/d", "two");

  /* The boundary inside a line, or as a prefix of a longer line, is
   * content, and so is "--x" not followed by a line end. */
  assert_int_equal(split("--x\r\n\r\nab--x\r\n--xy\r\n--x-\r\n--x--y\r\n--x z\r\n--x--",
                         "x", p, 4, &n),
                   EST_OK);
  assert_int_equal(n, 1);
  assert_part(&p[0], "", "ab--x\r\n--xy\r\n--x-\r\n--x--y\r\n--x z");

  /* No Content-Type (text/plain, RFC 2046 §5.1), other headers, a folded
   * header line, and a name with blanks before its colon. */
  assert_int_equal(split("--x\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n"
                         "--x\r\nContent-Type: application/pkcs7-mime;\r\n"
                         " smime-type=certs-only\r\n"
                         "X-Other: 1\r\n\r\nBBBB\r\n"
                         "--x\r\nContent-Type : a/b\r\n\r\nC\r\n--x--",
                         "x", p, 4, &n),
                   EST_OK);
  assert_int_equal(n, 3);
  assert_part(&p[0], "", "AAAA");
  assert_part(&p[1], "application/pkcs7-mime;", "BBBB");
  assert_part(&p[2], "a/b", "C");

  /* Empty bodies: an empty line then the delimiter's CRLF, or the empty
   * line being the delimiter's CRLF; and an empty part with no headers. */
  assert_int_equal(split("--x\r\nContent-Type: a/b\r\n\r\n\r\n--x\r\nContent-Type: c/d\r\n\r\n"
                         "--x\r\n\r\n--x--\r\n",
                         "x", p, 4, &n),
                   EST_OK);
  assert_int_equal(n, 3);
  assert_part(&p[0], "a/b", "");
  assert_part(&p[1], "c/d", "");
  assert_part(&p[2], "", "");
  /* A body that is itself one empty line keeps it. */
  assert_int_equal(split("--x\r\n\r\n\r\n\r\n--x--", "x", p, 4, &n), EST_OK);
  assert_part(&p[0], "", "\r\n");

  /* A NUL in a body is data, not an end. */
  static const char nul[] = "--x\r\n\r\na\0b\r\n--x--";
  assert_int_equal(proto_http_multipart(nul, sizeof nul - 1, "x", p, 4, &n), EST_OK);
  assert_int_equal(p[0].body_len, 3);
  assert_memory_equal(p[0].body, "a\0b", 3);
}

static void test_multipart_bad(void **state) {
  (void)state;
  proto_http_part p[4];
  size_t n = 99;
  const char *bad[] = {
      "",                                        /* nothing */
      "no delimiter at all\r\n",                 /* no first delimiter */
      " --x\r\n\r\nA\r\n--x--",                  /* not at a line start */
      "--x\r\n\r\nA\r\n",                        /* no close delimiter */
      "--x\r\n\r\nA\r\n--x\r\n\r\nB\r\n",        /* ditto, two parts */
      "--x\r\n\r\nA\r\n--x",                     /* ditto, cut */
      "--x\r\n\r\nA\r\n--x-",                    /* ditto */
      "--x\r\n\r\nA\r\n--x--z",                  /* ditto: not a delimiter */
      "--x--\r\n",                               /* no part at all */
      "--x\r\nContent-Type: a/b\r\nA\r\n--x--",  /* no empty line */
      "--x\r\nContent-Type: a/b\r\n--x--",       /* ditto */
      "--x\r\n--x--",                            /* ditto, nothing */
      "--x\r\nMIIB\r\n\r\n--x--",                /* a header line without ':' */
      "--x\r\n: v\r\n\r\n--x--",                 /* an empty header name */
      "--x\r\nContent-Type: a/b\r\ncontent-type: c/d\r\n\r\nA\r\n--x--", /* two types */
      "--x\r\n\r\nA\r\n--x\r\nno headers\r\n--x--", /* the second part is bad */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(split(bad[i], "x", p, 4, &n), EST_ERR_MALFORMED);
    assert_int_equal(n, 0);
  }

  /* Header lines of 1024 bytes are fine, 1025 are not. */
  char body[1200];
  for (size_t line = 1024; line <= 1025; line++) {
    size_t k = (size_t)snprintf(body, sizeof body, "--x\r\nX-Pad: ");
    memset(body + k, 'p', line - (k - 5));
    k += line - (k - 5);
    k += (size_t)snprintf(body + k, sizeof body - k, "\r\n\r\nA\r\n--x--\r\n");
    assert_int_equal(proto_http_multipart(body, k, "x", p, 4, &n),
                     line == 1024 ? EST_OK : EST_ERR_MALFORMED);
  }

  /* Five parts, room for four. */
  assert_int_equal(split("--x\r\n\r\n1\r\n--x\r\n\r\n2\r\n--x\r\n\r\n3\r\n--x\r\n\r\n4\r\n"
                         "--x\r\n\r\n5\r\n--x--\r\n",
                         "x", p, 4, &n),
                   EST_ERR_TOO_LARGE);
  assert_int_equal(n, 0);
  assert_int_equal(split("--x\r\n\r\n1\r\n--x\r\n\r\n2\r\n--x\r\n\r\n3\r\n--x\r\n\r\n4\r\n--x--",
                         "x", p, 4, &n),
                   EST_OK);
  assert_int_equal(n, 4);
  assert_part(&p[3], "", "4");

  /* Arguments. */
  assert_int_equal(split("--x\r\n\r\n--x--", "", p, 4, &n), EST_ERR_INVALID);
  assert_int_equal(split("--x\r\n\r\n--x--", "x ", p, 4, &n), EST_ERR_INVALID);
  assert_int_equal(split("--x\r\n\r\n--x--", "a*b", p, 4, &n), EST_ERR_INVALID);
  assert_int_equal(split("--x\r\n\r\n--x--", NULL, p, 4, &n), EST_ERR_INVALID);
  assert_int_equal(split("--x\r\n\r\n--x--", "x", NULL, 4, &n), EST_ERR_INVALID);
  assert_int_equal(split("--x\r\n\r\n--x--", "x", p, 4, NULL), EST_ERR_INVALID);
  assert_int_equal(proto_http_multipart(NULL, 1, "x", p, 4, &n), EST_ERR_INVALID);
  assert_int_equal(proto_http_multipart(NULL, 0, "x", p, 4, &n), EST_ERR_MALFORMED);
  char lb[PROTO_HTTP_BOUNDARY_MAX + 2];
  memset(lb, 'b', sizeof lb - 1);
  lb[sizeof lb - 1] = '\0';
  assert_int_equal(split("--x\r\n\r\n--x--", lb, p, 4, &n), EST_ERR_INVALID);
  /* The longest boundary works. */
  lb[PROTO_HTTP_BOUNDARY_MAX] = '\0';
  char mp[256];
  int k = snprintf(mp, sizeof mp, "--%s\r\n\r\nA\r\n--%s--\r\n", lb, lb);
  assert_int_equal(proto_http_multipart(mp, (size_t)k, lb, p, 4, &n), EST_OK);
  assert_part(&p[0], "", "A");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ops),
      cmocka_unit_test(test_route),
      cmocka_unit_test(test_type),
      cmocka_unit_test(test_items),
      cmocka_unit_test(test_boundary),
      cmocka_unit_test(test_multipart_own),
      cmocka_unit_test(test_multipart_tolerant),
      cmocka_unit_test(test_multipart_bad),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
