/* Error strings. No default: -Wswitch catches a missing case. */
#include "est_err.h"

const char *est_strerror(est_err err) {
  switch (err) {
  case EST_OK:
    return "success";
  case EST_ERR_NOMEM:
    return "allocation failed";
  case EST_ERR_INVALID:
    return "bad argument or value";
  case EST_ERR_TOO_LARGE:
    return "input over its size cap";
  case EST_ERR_IO:
    return "file or socket I/O failed";
  case EST_ERR_CONFIG:
    return "configuration is wrong";
  case EST_ERR_BAD_CSR:
    return "CSR is not valid DER PKCS#10";
  case EST_ERR_CSR_SIGNATURE:
    return "CSR signature does not verify";
  case EST_ERR_CONTENT_FORMAT:
    return "request Content-Format not allowed";
  case EST_ERR_NOT_ACCEPTABLE:
    return "Accept value cannot be produced";
  case EST_ERR_METHOD:
    return "method not allowed on resource";
  case EST_ERR_UNAUTHENTICATED:
    return "no client certificate";
  case EST_ERR_FORBIDDEN:
    return "client not authorised";
  case EST_ERR_POP_LINKING:
    return "identity/POP linking required";
  case EST_ERR_SUBJECT_MISMATCH:
    return "sren subject/SAN differ from cert";
  case EST_ERR_CA_REQUEST:
    return "CSR asks for a CA certificate";
  case EST_ERR_NOT_FOUND:
    return "nothing there for this client";
  case EST_ERR_INCOMPLETE:
    return "block-wise sequence broken";
  case EST_ERR_BAD_REQUEST:
    return "malformed request or option";
  case EST_ERR_PKI:
    return "CA operation failed";
  case EST_ERR_PENDING:
    return "waiting for a decision; retry later";
  case EST_ERR_UNAVAILABLE:
    return "temporarily unable to serve";
  case EST_ERR_INTERNAL:
    return "a bug or an impossible state";
  case EST_ERR_MALFORMED:
    return "encoded data (CBOR, ASN.1) malformed";
  case EST_ERR_TLS:
    return "DTLS or GnuTLS failure";
  case EST_ERR_ABI:
    return "plugin ABI mismatch";
  case EST_ERR_KEY_MISMATCH:
    return "private key does not match cert";
  case EST_ERR_ADDR_IN_USE:
    return "listen address already in use";
  case EST_ERR_REJECTED:
    return "an operator rejected the request";
  case EST_ERR_EXISTS:
    return "object already exists";
  case EST_ERR_STATE:
    return "object is in the wrong state";
  case EST_ERR_BUSY:
    return "database locked or busy";
  case EST_ERR_STORE:
    return "database error";
  case EST_ERR_SCHEMA:
    return "database schema newer than code";
  case EST_ERR__LAST:
    break;
  }
  return "unknown error";
}

const char *est_err_name(est_err err) {
  switch (err) {
  case EST_OK:
    return "OK";
  case EST_ERR_NOMEM:
    return "NOMEM";
  case EST_ERR_INVALID:
    return "INVALID";
  case EST_ERR_TOO_LARGE:
    return "TOO_LARGE";
  case EST_ERR_IO:
    return "IO";
  case EST_ERR_CONFIG:
    return "CONFIG";
  case EST_ERR_BAD_CSR:
    return "BAD_CSR";
  case EST_ERR_CSR_SIGNATURE:
    return "CSR_SIGNATURE";
  case EST_ERR_CONTENT_FORMAT:
    return "CONTENT_FORMAT";
  case EST_ERR_NOT_ACCEPTABLE:
    return "NOT_ACCEPTABLE";
  case EST_ERR_METHOD:
    return "METHOD";
  case EST_ERR_UNAUTHENTICATED:
    return "UNAUTHENTICATED";
  case EST_ERR_FORBIDDEN:
    return "FORBIDDEN";
  case EST_ERR_POP_LINKING:
    return "POP_LINKING";
  case EST_ERR_SUBJECT_MISMATCH:
    return "SUBJECT_MISMATCH";
  case EST_ERR_CA_REQUEST:
    return "CA_REQUEST";
  case EST_ERR_NOT_FOUND:
    return "NOT_FOUND";
  case EST_ERR_INCOMPLETE:
    return "INCOMPLETE";
  case EST_ERR_BAD_REQUEST:
    return "BAD_REQUEST";
  case EST_ERR_PKI:
    return "PKI";
  case EST_ERR_PENDING:
    return "PENDING";
  case EST_ERR_UNAVAILABLE:
    return "UNAVAILABLE";
  case EST_ERR_INTERNAL:
    return "INTERNAL";
  case EST_ERR_MALFORMED:
    return "MALFORMED";
  case EST_ERR_TLS:
    return "TLS";
  case EST_ERR_ABI:
    return "ABI";
  case EST_ERR_KEY_MISMATCH:
    return "KEY_MISMATCH";
  case EST_ERR_ADDR_IN_USE:
    return "ADDR_IN_USE";
  case EST_ERR_REJECTED:
    return "REJECTED";
  case EST_ERR_EXISTS:
    return "EXISTS";
  case EST_ERR_STATE:
    return "STATE";
  case EST_ERR_BUSY:
    return "BUSY";
  case EST_ERR_STORE:
    return "STORE";
  case EST_ERR_SCHEMA:
    return "SCHEMA";
  case EST_ERR__LAST:
    break;
  }
  return "UNKNOWN";
}
