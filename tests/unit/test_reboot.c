/* host/reboot.c: reading libcoap's "invalid epoch 0" line and the peer
 * address in it (the probe itself runs in it.est_reboot). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "host/coapd.h"
#include "host/reboot.h"

static void test_parse_line(void **state) {
  (void)state;
  char remote[64];
  int ifindex = -1;
  assert_true(reboot_parse_line("** 127.0.0.1:33030 <-> 127.0.0.1:54537 (if1) DTLS: Discarded "
                                "message[0] with invalid epoch 0.",
                                remote, sizeof remote, &ifindex));
  assert_string_equal(remote, "127.0.0.1:54537");
  assert_int_equal(ifindex, 1);
  assert_true(reboot_parse_line("** [::1]:5684 <-> [::1]:40000 (if12) DTLS: Discarded message[3] "
                                "with invalid epoch 0.",
                                remote, sizeof remote, &ifindex));
  assert_string_equal(remote, "[::1]:40000");
  assert_int_equal(ifindex, 12);
  /* Other lines, and broken ones, are not sightings. */
  assert_false(reboot_parse_line("** 127.0.0.1:1 <-> 127.0.0.1:2 (if1) DTLS: Discarded message[0] "
                                 "due to invalid decryption",
                                 remote, sizeof remote, &ifindex));
  assert_false(reboot_parse_line("with invalid epoch 0", remote, sizeof remote, &ifindex));
  assert_false(reboot_parse_line("a <-> b with invalid epoch 0", remote, sizeof remote, &ifindex));
  assert_false(reboot_parse_line("x <-> 127.0.0.1:2 (ifz) with invalid epoch 0", remote,
                                 sizeof remote, &ifindex));
  assert_false(reboot_parse_line("x <-> 127.0.0.1:2 (if1) with invalid epoch 0", remote, 8,
                                 &ifindex)); /* does not fit */
  assert_false(reboot_parse_line(NULL, remote, sizeof remote, &ifindex));
}

static void test_parse_addr(void **state) {
  (void)state;
  coap_address_t a;
  assert_true(reboot_parse_addr("127.0.0.1:54537", &a));
  assert_int_equal(a.addr.sin.sin_family, AF_INET);
  assert_int_equal(ntohs(a.addr.sin.sin_port), 54537);
  assert_true(reboot_parse_addr("[::1]:5684", &a));
  assert_int_equal(a.addr.sin6.sin6_family, AF_INET6);
  assert_int_equal(ntohs(a.addr.sin6.sin6_port), 5684);
  const char *bad[] = {"127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:70000",
                       "127.0.0.1:80x", "[::1]5684", "[::1", "host:80", "::1:80", "[127.0.0.1]:80", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_false(reboot_parse_addr(bad[i], &a));
  assert_false(reboot_parse_addr(NULL, &a));
}

/* reboot.c logs through coapd_log; the unit test has no logger. */
void coapd_log(int level, const char *fmt, ...) {
  (void)level;
  (void)fmt;
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_parse_line),
    cmocka_unit_test(test_parse_addr),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
