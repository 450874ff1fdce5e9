/* Authorisation rules (docs/decisions.md §5-§6, RFC 9148 §3). */
#include "policy.h"

#include <stdio.h>

static est_err deny(char *diag, size_t diag_len, const char *why) {
  if (diag && diag_len)
    snprintf(diag, diag_len, "%s", why);
  return EST_ERR_FORBIDDEN;
}

static const char *refusal(pki_client_status st) {
  switch (st) {
  case PKI_STATUS_LDEVID_EXPIRED:
    return "client certificate has expired (issued by this CA; "
           "re-enroll before it expires)";
  case PKI_STATUS_IDEVID_EXPIRED:
    return "client certificate (IDevID) has expired; this server does not "
           "accept expired IDevIDs";
  case PKI_STATUS_NOT_YET_VALID:
    return "client certificate is not yet valid";
  case PKI_STATUS_REVOKED:
    return "client certificate revoked (by its manufacturer's CRL)";
  case PKI_STATUS_VALID:
  case PKI_STATUS_UNTRUSTED:
  case PKI_STATUS__MAX:
    break;
  }
  return "client certificate is not from this CA or a trusted manufacturer";
}

est_err policy_decide(const policy_input *in, char *diag, size_t diag_len) {
  /* RFC 7030 §4.1.1 and §4.5.1: over HTTPS the CA certificates and the CSR
   * attributes need no client authentication (docs/decisions.md §16).
   * Over CoAP, RFC 9148 §3 wants a certificate for them too. */
  if (in->https && (in->fn == EST_FN_CRTS || in->fn == EST_FN_ATT))
    return EST_OK;
  if (in->cls == PKI_CLIENT_ANONYMOUS && in->via_ra) {
    /* RFC 7030 §3.7: the RA vouches for a device it names by the CSR
     * alone; decided under ra_policy (docs/decisions.md §17). */
    if (in->fn == EST_FN_SEN || in->fn == EST_FN_SKG)
      return EST_OK;
    return deny(diag, diag_len,
                "re-enrollment through an RA needs the device's certificate "
                "(EST-Device-Chain)");
  }
  if (in->cls == PKI_CLIENT_ANONYMOUS) {
    if (in->fn == EST_FN_SEN && in->anonymous_enroll)
      return EST_OK; /* enroll.c queues it for an operator, always */
    if (diag && diag_len)
      snprintf(diag, diag_len, "%s",
               in->fn == EST_FN_SEN ? "a client certificate is required (TLS client "
                                      "authentication)"
                                    : "a client certificate is required for this operation");
    return EST_ERR_UNAUTHENTICATED;
  }
  /* AUTH-3: every function needs an authenticated client; one that chains
   * to neither our CA nor a manufacturer anchor gets nothing, and neither
   * does one refused for its dates (AUTH-5, docs/decisions.md §5). */
  if (in->cls == PKI_CLIENT_UNKNOWN)
    return deny(diag, diag_len, refusal(in->status));
  /* Revoked is refused for every function, on an open session too
   * (docs/decisions.md §14): a device cannot renew its way out. */
  if (in->revoked)
    return deny(diag, diag_len, "client certificate revoked");
  switch (in->fn) {
  case EST_FN_CRTS:
  case EST_FN_ATT:
  case EST_FN_SEN:
  case EST_FN_SKG:
  case EST_FN_SKC:
    return EST_OK;
  case EST_FN_SREN:
    /* AUTH-7: re-enrollment renews a certificate this CA issued; a device
     * holding only its IDevID enrolls with sen. */
    if (in->cls != PKI_CLIENT_LDEVID)
      return deny(diag, diag_len,
                  "re-enrollment needs a certificate issued by this CA");
    return EST_OK;
  case EST_FN__MAX:
    break;
  }
  return deny(diag, diag_len, "unknown function");
}
