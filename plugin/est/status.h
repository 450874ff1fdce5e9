/**
 * @file status.h
 * @brief Project errors to protocol status codes: the only place where an
 * est_err becomes a CoAP response code (docs/decisions.md §4) or an HTTP
 * status code (docs/decisions.md §16).
 */
#ifndef EST_STATUS_H
#define EST_STATUS_H

#include "common/est_err.h"

/**
 * The CoAP response code for @p err as class*100+detail (403 for 4.03);
 * 500 for anything unexpected, 0 for EST_OK (success codes depend on the
 * method).
 */
unsigned status_coap(est_err err);

/**
 * The HTTP status for @p err over HTTPS EST (RFC 7030 §4.2.3): 202 for a
 * request waiting for an operator, 503 for other "come back later", the
 * 4xx of the CoAP mapping otherwise (4.08 becomes 400: HTTP has no broken
 * block sequence); 500 for anything unexpected, 0 for EST_OK.
 */
unsigned status_http(est_err err);

/**
 * What an upstream EST server's HTTP status means to a registrar (RFC 9148
 * §5, REG-6, REG-15; docs/decisions.md §19), so the device hears the
 * matching CoAP code: EST_OK for 200, EST_ERR_PENDING for 202, the 4xx
 * counterparts (401 stays "unauthenticated", 405 becomes "forbidden": the
 * upstream does not serve that operation to us), and EST_ERR_UNAVAILABLE
 * for every 5xx and anything else: 5.03 + Max-Age, never 5.00 or 5.02.
 */
est_err status_from_http(unsigned http);

/** class*100+detail (403) to the CoAP code byte (RFC 7252 §3: c.dd). */
#define STATUS_COAP_PDU(n) ((((n) / 100) << 5) | ((n) % 100))

#endif /* EST_STATUS_H */
