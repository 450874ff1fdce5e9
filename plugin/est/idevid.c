/* Manufacturer trust and its CRLs, reloaded when a file changes (idevid.h). */
#include "idevid.h"

#include <string.h>
#include <sys/stat.h>

static idevid_sig sig_of(const char *path) {
  idevid_sig g;
  struct stat st;
  memset(&g, 0, sizeof g);
  if (stat(path, &st) == 0) {
    g.present = true;
    g.mtime_ns = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
    g.size = (long long)st.st_size;
    g.ino = (unsigned long long)st.st_ino;
  }
  return g;
}

static bool sig_same(const idevid_sig *a, const idevid_sig *b) {
  return a->present == b->present && a->mtime_ns == b->mtime_ns && a->size == b->size &&
         a->ino == b->ino;
}

est_err idevid_load(idevid_src *src, pki_trust **out, unsigned *revoked, char *diag,
                    size_t diag_len) {
  pki_trust *t = NULL;
  idevid_sig sig[1 + IDEVID_CRL_MAX];
  est_err rc;
  *out = NULL;
  *revoked = 0;
  /* Taken before reading: a change while we read shows up next time. */
  for (size_t i = 0; i <= src->ncrl; i++)
    sig[i] = sig_of(i == 0 ? src->trust : src->crl[i - 1]);
  rc = pki_trust_load(src->trust, &t, diag, diag_len);
  for (size_t i = 0; rc == EST_OK && i < src->ncrl; i++) {
    unsigned n = 0;
    rc = pki_trust_add_crl_file(t, src->crl[i], &n, diag, diag_len);
    *revoked += n;
  }
  if (rc != EST_OK) {
    pki_trust_free(t);
    return rc;
  }
  memcpy(src->sig, sig, sizeof src->sig);
  *out = t;
  return EST_OK;
}

bool idevid_changed(const idevid_src *src) {
  for (size_t i = 0; i <= src->ncrl; i++) {
    idevid_sig now = sig_of(i == 0 ? src->trust : src->crl[i - 1]);
    if (!sig_same(&now, &src->sig[i]))
      return true;
  }
  return false;
}

void idevid_mark_seen(idevid_src *src) {
  for (size_t i = 0; i <= src->ncrl; i++)
    src->sig[i] = sig_of(i == 0 ? src->trust : src->crl[i - 1]);
}
