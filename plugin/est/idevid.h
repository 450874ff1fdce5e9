/**
 * @file idevid.h
 * @brief The manufacturer trust the plugin classifies IDevIDs with:
 * idevid_trust plus the CRLs of idevid_crl, loaded at start and again
 * whenever one of the files changes (docs/decisions.md §14). A reload that
 * fails keeps the trust in use, so a half-written CRL never opens the door.
 */
#ifndef EST_IDEVID_H
#define EST_IDEVID_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/est_err.h"
#include "pki.h"

/** CRL files idevid_crl may name. */
#define IDEVID_CRL_MAX 16

/** What a file looked like when it was read. */
typedef struct idevid_sig {
  long long mtime_ns;
  long long size;
  unsigned long long ino;
  bool present;
} idevid_sig;

typedef struct idevid_src {
  char trust[PATH_MAX];
  char crl[IDEVID_CRL_MAX][PATH_MAX];
  size_t ncrl;
  idevid_sig sig[1 + IDEVID_CRL_MAX]; /* trust, then each CRL */
} idevid_src;

/** Read the trust bundle and every CRL into a new trust list: *revoked is
 * the number of serials the CRLs list. Records what each file looked like. */
est_err idevid_load(idevid_src *src, pki_trust **out, unsigned *revoked, char *diag,
                    size_t diag_len) EST_MUST_CHECK;

/** True when a file differs from what idevid_load() read (time, size,
 * inode: an editor's rename counts). */
bool idevid_changed(const idevid_src *src);

/** Take the files as they are now as read (after a failed reload, so it
 * is tried again only when they change once more). */
void idevid_mark_seen(idevid_src *src);

#endif /* EST_IDEVID_H */
