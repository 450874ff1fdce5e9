/* The one mapping of project errors to CoAP response codes
 * (docs/decisions.md §4, RFC 9148 §4.5), and the one to HTTP status codes
 * (docs/decisions.md §16, RFC 7030 §4.2.3), and the one from an upstream's
 * HTTP status back to a project error (docs/decisions.md §19). */
#include "status.h"

unsigned status_coap(est_err err) {
  /* No default: -Wswitch
   * flags a new error code that has not been mapped. */
  switch (err) {
  case EST_OK:
    return 0;
  case EST_ERR_BAD_CSR:
  case EST_ERR_CSR_SIGNATURE:
  case EST_ERR_BAD_REQUEST:
  case EST_ERR_MALFORMED:
  case EST_ERR_INVALID:
    return 400;
  case EST_ERR_UNAUTHENTICATED:
    return 401;
  case EST_ERR_FORBIDDEN:
  case EST_ERR_POP_LINKING:
  case EST_ERR_SUBJECT_MISMATCH:
  case EST_ERR_CA_REQUEST:
  case EST_ERR_REJECTED:
    return 403;
  case EST_ERR_NOT_FOUND:
    return 404;
  case EST_ERR_METHOD:
    return 405;
  case EST_ERR_NOT_ACCEPTABLE:
    return 406;
  case EST_ERR_INCOMPLETE:
    return 408;
  case EST_ERR_TOO_LARGE:
    return 413;
  case EST_ERR_CONTENT_FORMAT:
    return 415;
  /* RFC 9148 §4.7: a transient condition is "try again later". */
  case EST_ERR_PENDING:
  case EST_ERR_UNAVAILABLE:
  case EST_ERR_BUSY:
    return 503;
  case EST_ERR_NOMEM:
  case EST_ERR_IO:
  case EST_ERR_CONFIG:
  case EST_ERR_PKI:
  case EST_ERR_INTERNAL:
  case EST_ERR_TLS:
  case EST_ERR_ABI:
  case EST_ERR_KEY_MISMATCH:
  case EST_ERR_ADDR_IN_USE:
  case EST_ERR_EXISTS:
  case EST_ERR_STATE:
  case EST_ERR_STORE:
  case EST_ERR_SCHEMA:
  case EST_ERR__LAST:
    break;
  }
  return 500;
}

unsigned status_http(est_err err) {
  switch (err) {
  /* RFC 7030 §4.2.3: the request is queued; 202 with Retry-After. */
  case EST_ERR_PENDING:
    return 202;
  /* No Block1 in HTTP: a body that does not add up is a bad request. */
  case EST_ERR_INCOMPLETE:
    return 400;
  /* RFC 9110 §15.5.2: a 401 must offer an HTTP auth scheme, and a missing
   * client certificate has none. */
  case EST_ERR_UNAUTHENTICATED:
    return 403;
  default:
    break;
  }
  /* The rest means the same in both (RFC 7252 §12.1.2 took its codes
   * from HTTP). */
  return status_coap(err);
}

est_err status_from_http(unsigned http) {
  switch (http) {
  case 200:
    return EST_OK;
  case 202:
    return EST_ERR_PENDING;
  case 400:
    return EST_ERR_BAD_REQUEST;
  case 401:
    return EST_ERR_UNAUTHENTICATED;
  case 403:
  case 405:
    return EST_ERR_FORBIDDEN;
  case 404:
    return EST_ERR_NOT_FOUND;
  case 413:
    return EST_ERR_TOO_LARGE;
  case 415:
    return EST_ERR_CONTENT_FORMAT;
  default:
    break;
  }
  /* Other 4xx are the registrar's fault or unknown; 5xx the upstream's:
   * the device comes back later either way (RFC 9148 §4.7). */
  return http >= 400 && http < 500 && http != 408 && http != 429 ? EST_ERR_BAD_REQUEST
                                                                  : EST_ERR_UNAVAILABLE;
}
