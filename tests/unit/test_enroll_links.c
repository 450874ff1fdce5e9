/* est-enroll discovery: CoRE link format (RFC 6690), coaps URIs and the
 * choice of one link per EST function (RFC 9148 §4.1, DISC-*). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/links.h"

/* RFC 9148 §4.1 example (DISC-3), with its line breaks. */
static const char rfc_example[] =
    "</est/crts>;rt=\"ace.est.crts\";ct=\"281 287\",\n"
    "</est/sen>;rt=\"ace.est.sen\";ct=\"281 287\",\n"
    "</est/sren>;rt=\"ace.est.sren\";ct=\"281 287\",\n"
    "</est/att>;rt=\"ace.est.att\";ct=285,\n"
    "</est/skg>;rt=\"ace.est.skg\";ct=62,\n"
    "</est/skc>;rt=\"ace.est.skc\";ct=62";

typedef struct collect {
  ec_link links[16];
  size_t n;
  size_t stop_after;
} collect;

static bool collect_cb(const ec_link *l, void *arg) {
  collect *c = arg;
  if (c->n < 16)
    c->links[c->n] = *l;
  c->n++;
  return c->stop_after == 0 || c->n < c->stop_after;
}

static est_err parse(const char *s, collect *c) {
  memset(c, 0, sizeof *c);
  return ec_links_parse(s, strlen(s), collect_cb, c);
}

static void parse_rfc_example(void **state) {
  (void)state;
  collect c;
  assert_int_equal(parse(rfc_example, &c), EST_OK);
  assert_int_equal(c.n, 6);
  assert_string_equal(c.links[0].target, "/est/crts");
  assert_string_equal(c.links[0].rt, "ace.est.crts");
  assert_int_equal(c.links[0].ct_count, 2);
  assert_int_equal(c.links[0].ct[0], 281);
  assert_int_equal(c.links[0].ct[1], 287);
  assert_int_equal(c.links[3].ct_count, 1);
  assert_int_equal(c.links[3].ct[0], 285);
  assert_true(ec_link_is_fn(&c.links[4], EST_FN_SKG));
  assert_false(ec_link_is_fn(&c.links[4], EST_FN_SKC));
}

static void parse_odd_but_valid(void **state) {
  (void)state;
  collect c;
  /* Empty document, spaces, params without value, quoted commas and
   * semicolons, escapes, upper-case names, several rt values. */
  assert_int_equal(parse("", &c), EST_OK);
  assert_int_equal(c.n, 0);
  assert_int_equal(parse("  \r\n ", &c), EST_OK);
  assert_int_equal(c.n, 0);
  assert_int_equal(parse("</a>", &c), EST_OK);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.links[0].rt, "");
  assert_int_equal(parse("</x>;obs;title=\"a,b;c\\\"d\";RT=\"foo ace.est.sen\";CT=\"40  41\" , "
                         "</y> ; rt = ace.est.crts ; ct=0",
                         &c),
                   EST_OK);
  assert_int_equal(c.n, 2);
  assert_string_equal(c.links[0].rt, "foo ace.est.sen");
  assert_true(ec_link_is_fn(&c.links[0], EST_FN_SEN));
  assert_int_equal(c.links[0].ct_count, 2);
  assert_int_equal(c.links[0].ct[1], 41);
  assert_string_equal(c.links[1].rt, "ace.est.crts");
  assert_int_equal(c.links[1].ct[0], 0);
  /* Only the first rt counts. */
  assert_int_equal(parse("</z>;rt=a;rt=ace.est.sen", &c), EST_OK);
  assert_string_equal(c.links[0].rt, "a");
  /* Bad ct values are dropped, good ones kept. */
  assert_int_equal(parse("</z>;ct=\"x 65536 123456 7 -1 65535\"", &c), EST_OK);
  assert_int_equal(c.links[0].ct_count, 2);
  assert_int_equal(c.links[0].ct[0], 7);
  assert_int_equal(c.links[0].ct[1], 65535);
  /* At most EC_LINK_CT_MAX values. */
  assert_int_equal(parse("</z>;ct=\"1 2 3 4 5 6 7 8 9 10\"", &c), EST_OK);
  assert_int_equal(c.links[0].ct_count, EC_LINK_CT_MAX);
}

static void parse_stops_on_request(void **state) {
  (void)state;
  collect c;
  memset(&c, 0, sizeof c);
  c.stop_after = 2;
  assert_int_equal(ec_links_parse(rfc_example, strlen(rfc_example), collect_cb, &c), EST_OK);
  assert_int_equal(c.n, 2);
}

static void parse_hostile(void **state) {
  (void)state;
  static const char *const bad[] = {
    "<", "</a", "/a>", "</a>;", "</a>;=x", "</a>;rt=", "</a>;rt=\"x", "</a>;rt=\"x\\",
    "</a>,", "</a>,,</b>", "</a> </b>", "</a>x", "</a>;rt=\"\x01\"", "</a b>",
    "</a<b>", "<\"/a>", "</a>;rt=a\"b", "</a>;rt=,</b>", ";rt=x", ",", "</a>;rt=x;",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    collect c;
    est_err rc = parse(bad[i], &c);
    if (rc != EST_ERR_MALFORMED)
      fail_msg("'%s' gave %d", bad[i], rc);
  }
  /* A NUL inside is not text. */
  static const char nul[] = "</a>;rt=\"x\0y\"";
  collect c;
  memset(&c, 0, sizeof c);
  assert_int_equal(ec_links_parse(nul, sizeof nul - 1, collect_cb, &c), EST_ERR_MALFORMED);
  /* Links before the error were reported. */
  assert_int_equal(parse("</a>;rt=x,</b", &c), EST_ERR_MALFORMED);
  assert_int_equal(c.n, 1);
  /* Arguments. */
  assert_int_equal(ec_links_parse(NULL, 3, collect_cb, &c), EST_ERR_INVALID);
  assert_int_equal(ec_links_parse("", 0, NULL, &c), EST_ERR_INVALID);
}

static void parse_caps(void **state) {
  (void)state;
  collect c;
  /* Too large a document. */
  size_t big = EC_LINKS_BODY_MAX + 1;
  char *s = malloc(big);
  assert_non_null(s);
  memset(s, ' ', big);
  memset(&c, 0, sizeof c);
  assert_int_equal(ec_links_parse(s, big, collect_cb, &c), EST_ERR_TOO_LARGE);
  assert_int_equal(ec_links_parse(s, big - 1, collect_cb, &c), EST_OK);
  /* An over-long target or rt skips that link only. */
  size_t n = 0;
  s[n++] = '<';
  for (size_t i = 0; i < EC_LINK_TARGET_MAX; i++)
    s[n++] = 'a';
  static const char mid[] = ">;rt=ace.est.sen,</ok>;rt=\"", tail[] = "\",</fine>";
  memcpy(s + n, mid, sizeof mid - 1);
  n += sizeof mid - 1;
  for (size_t i = 0; i < EC_LINK_RT_MAX; i++)
    s[n++] = 'r';
  memcpy(s + n, tail, sizeof tail - 1);
  n += sizeof tail - 1;
  assert_int_equal(ec_links_parse(s, n, collect_cb, &c), EST_OK);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.links[0].target, "/fine");
  /* The longest target that fits. */
  n = 0;
  s[n++] = '<';
  for (size_t i = 0; i < EC_LINK_TARGET_MAX - 1; i++)
    s[n++] = 'b';
  s[n++] = '>';
  memset(&c, 0, sizeof c);
  assert_int_equal(ec_links_parse(s, n, collect_cb, &c), EST_OK);
  assert_int_equal(c.n, 1);
  assert_int_equal(strlen(c.links[0].target), EC_LINK_TARGET_MAX - 1);
  free(s);
}

static void rt_lists(void **state) {
  (void)state;
  assert_true(ec_link_has_rt("ace.est.sen", "ace.est.sen"));
  assert_true(ec_link_has_rt(" a  ace.est.sen b", "ace.est.sen"));
  assert_false(ec_link_has_rt("ace.est.sen2", "ace.est.sen"));
  assert_false(ec_link_has_rt("ace.est.se", "ace.est.sen"));
  assert_false(ec_link_has_rt("", "ace.est.sen"));
  assert_false(ec_link_has_rt("x", ""));
  assert_false(ec_link_has_rt(NULL, "x"));
}

static void uri_parse(void **state) {
  (void)state;
  ec_uri u;
  assert_int_equal(ec_uri_parse("coaps://127.0.0.1:5684", &u), EST_OK);
  assert_true(u.has_authority);
  assert_string_equal(u.host, "127.0.0.1");
  assert_int_equal(u.port, 5684);
  assert_string_equal(u.path, "");
  assert_int_equal(ec_uri_parse("COAPS://est.example", &u), EST_OK);
  assert_string_equal(u.host, "est.example");
  assert_int_equal(u.port, EC_COAPS_PORT);
  /* DISC-8: IPv6 literal, non-default port, path. */
  assert_int_equal(ec_uri_parse("coaps://[2001:db8:3::123]:61617/est/crts", &u), EST_OK);
  assert_string_equal(u.host, "2001:db8:3::123");
  assert_int_equal(u.port, 61617);
  assert_string_equal(u.path, "/est/crts");
  assert_int_equal(ec_uri_parse("coaps://h:/", &u), EST_OK);
  assert_int_equal(u.port, EC_COAPS_PORT);
  assert_string_equal(u.path, "/");
  assert_int_equal(ec_uri_parse("/.well-known/est/sen", &u), EST_OK);
  assert_false(u.has_authority);
  assert_string_equal(u.path, "/.well-known/est/sen");
  /* A relative reference resolves against the origin (RFC 6690 §2.1). */
  assert_int_equal(ec_uri_parse("est/crts", &u), EST_OK);
  assert_string_equal(u.path, "/est/crts");
  assert_int_equal(ec_uri_parse("/e%20x/a", &u), EST_OK);

  static const char *const bad[] = {
    "coap://h/x", "http://h/x", "//h/x", "coaps://", "coaps://h:0", "coaps://h:65536",
    "coaps://h:123456", "coaps://[::1", "coaps://[]", "coaps://[zz::1]", "coaps://u@h/",
    "coaps://h/x?q", "coaps://h/x#f", "/a/../b", "/a/./b", "/a//b", "/a/", "a:b/c",
    "/%zz", "/%2", "coaps://h x/", "coaps://h:12a", "/a b", "coaps://h\\/",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (ec_uri_parse(bad[i], &u) != EST_ERR_INVALID)
      fail_msg("'%s' was accepted", bad[i]);
  assert_int_equal(ec_uri_parse(NULL, &u), EST_ERR_INVALID);
  assert_int_equal(ec_uri_path_segments("/est/crts"), 2);
  assert_int_equal(ec_uri_path_segments(""), 0);
  assert_int_equal(ec_uri_path_segments("/"), 0);
  assert_int_equal(ec_uri_path_segments("/a/b/c"), 3);
}

static void discovery_choice(void **state) {
  (void)state;
  ec_discovery d;
  assert_int_equal(ec_discovery_parse(rfc_example, strlen(rfc_example), NULL, &d), EST_OK);
  assert_int_equal(d.est_links, 6);
  for (int fn = 0; fn < EST_FN__MAX; fn++)
    assert_true(d.found[fn]);
  assert_string_equal(d.uri[EST_FN_SREN].path, "/est/sren");

  /* Labelled links first: without --label the unlabelled one wins; with
   * it, the labelled one. Unfiltered /.well-known/core (DISC-9): other
   * links are ignored. */
  static const char labelled[] =
      "</sensors/temp>;rt=\"temperature-c\";if=sensor,"
      "</e/ca2/crts>;rt=\"ace.est.crts\";ct=\"281 287\","
      "</e/crts>;rt=\"ace.est.crts\";ct=\"281 287\","
      "</e/ca2/sen>;rt=\"ace.est.sen\","
      "</e/sen>;rt=\"ace.est.sen\","
      "<coap://h/e/att>;rt=\"ace.est.att\","
      "<coaps://[2001:db8:3::123]:61617/est/skg>;rt=\"ace.est.skg\";ct=62";
  assert_int_equal(ec_discovery_parse(labelled, strlen(labelled), NULL, &d), EST_OK);
  assert_string_equal(d.uri[EST_FN_CRTS].path, "/e/crts");
  assert_string_equal(d.uri[EST_FN_SEN].path, "/e/sen");
  assert_false(d.found[EST_FN_SREN]);
  assert_false(d.found[EST_FN_ATT]); /* not coaps */
  assert_true(d.found[EST_FN_SKG]);
  assert_true(d.uri[EST_FN_SKG].has_authority);
  assert_int_equal(d.uri[EST_FN_SKG].port, 61617);
  assert_string_equal(d.uri[EST_FN_SKG].host, "2001:db8:3::123");
  assert_int_equal(d.est_links, 6);
  assert_int_equal(ec_discovery_parse(labelled, strlen(labelled), "ca2", &d), EST_OK);
  assert_string_equal(d.uri[EST_FN_CRTS].path, "/e/ca2/crts");
  assert_string_equal(d.uri[EST_FN_SEN].path, "/e/ca2/sen");
  assert_false(d.found[EST_FN_SKG]);
  assert_int_equal(ec_discovery_parse(labelled, strlen(labelled), "ca3", &d), EST_OK);
  assert_false(d.found[EST_FN_CRTS]);
  /* A root-level link ("</>") or one with no path is never chosen. */
  assert_int_equal(ec_discovery_parse("</>;rt=ace.est.crts", 19, NULL, &d), EST_OK);
  assert_false(d.found[EST_FN_CRTS]);
  /* Half a document: what parsed counts. */
  assert_int_equal(ec_discovery_parse("</est/crts>;rt=ace.est.crts,<", 29, NULL, &d),
                   EST_ERR_MALFORMED);
  assert_true(d.found[EST_FN_CRTS]);
}

static void path_build(void **state) {
  (void)state;
  char p[64];
  assert_int_equal(ec_path_build("/est", NULL, EST_FN_SEN, p, sizeof p), EST_OK);
  assert_string_equal(p, "/est/sen");
  assert_int_equal(ec_path_build("/.well-known/est", "ca2", EST_FN_CRTS, p, sizeof p), EST_OK);
  assert_string_equal(p, "/.well-known/est/ca2/crts");
  assert_int_equal(ec_path_build("/est/", "", EST_FN_SKC, p, sizeof p), EST_OK);
  assert_string_equal(p, "/est/skc");
  assert_int_equal(ec_path_build("/", NULL, EST_FN_ATT, p, sizeof p), EST_OK);
  assert_string_equal(p, "/att");
  assert_int_equal(ec_path_build("est", NULL, EST_FN_ATT, p, sizeof p), EST_OK);
  assert_string_equal(p, "/est/att");
  assert_int_equal(ec_path_build("/est", NULL, EST_FN_SREN, p, 9), EST_ERR_TOO_LARGE);
  assert_int_equal(ec_path_build("/est", NULL, EST_FN_SREN, p, 10), EST_OK);
  assert_int_equal(ec_path_build("/est", NULL, EST_FN__MAX, p, sizeof p), EST_ERR_INVALID);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(parse_rfc_example),
    cmocka_unit_test(parse_odd_but_valid),
    cmocka_unit_test(parse_stops_on_request),
    cmocka_unit_test(parse_hostile),
    cmocka_unit_test(parse_caps),
    cmocka_unit_test(rt_lists),
    cmocka_unit_test(uri_parse),
    cmocka_unit_test(discovery_choice),
    cmocka_unit_test(path_build),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
