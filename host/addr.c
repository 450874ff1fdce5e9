/* IP literal + port to coap_address_t (addr.h). */
#include "addr.h"

#include <arpa/inet.h>

bool coapd_addr_set(coap_address_t *out, const char *ip, uint16_t port) {
  coap_address_init(out);
  if (inet_pton(AF_INET, ip, &out->addr.sin.sin_addr) == 1) {
    out->addr.sin.sin_family = AF_INET;
    out->addr.sin.sin_port = htons(port);
    out->size = sizeof out->addr.sin;
    return true;
  }
  if (inet_pton(AF_INET6, ip, &out->addr.sin6.sin6_addr) == 1) {
    out->addr.sin6.sin6_family = AF_INET6;
    out->addr.sin6.sin6_port = htons(port);
    out->size = sizeof out->addr.sin6;
    return true;
  }
  coap_address_init(out);
  return false;
}
