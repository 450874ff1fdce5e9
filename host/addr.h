/**
 * @file addr.h
 * @brief An IP literal and a port as a libcoap address: the one place
 * coapd turns text into a coap_address_t (listen lines, peers in logs).
 */
#ifndef COAPD_ADDR_H
#define COAPD_ADDR_H

#include <stdbool.h>
#include <stdint.h>

#include <coap3/coap.h>

/** @p ip is an IPv4 or IPv6 literal without brackets. False if it is
 * neither; then @p out is cleared. */
bool coapd_addr_set(coap_address_t *out, const char *ip, uint16_t port);

#endif /* COAPD_ADDR_H */
