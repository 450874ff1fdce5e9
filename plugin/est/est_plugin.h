/* Private to the plugin: its state and the resource routes. */
#ifndef EST_PLUGIN_H
#define EST_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <limits.h>
#include <stdint.h>

#include <coapd/plugin.h>

#include "body.h"
#include "dedup.h"
#include "enroll.h"
#include "idevid.h"
#include "pki.h"
#include "pop.h"
#include "proto/resource.h"
#include "worker.h"

/* How often idevid_trust and idevid_crl are checked for changes. */
#define EST_IDEVID_POLL_MS 2000u
#define EST_MAX_LABELS 16
#define EST_LABEL_MAX (PROTO_LABEL_MAX + 1) /* with the NUL */
#define EST_ROOT_MAX 64
/* Two roots, each unlabelled plus every label, times the functions. */
#define EST_MAX_ROUTES (2 * (1 + EST_MAX_LABELS) * EST_FN__MAX)

typedef struct est_plugin est_plugin;
typedef struct est_job est_job;

/* What a resource serves; set as the libcoap resource's user data. */
typedef struct est_route {
  est_plugin *p;
  est_fn fn;
  const char *label; /* NULL if none; points into est_plugin.labels */
} est_route;

struct est_plugin {
  const coapd_host_api *api;
  bool check_only;   /* coapd -t: check, write nothing */
  pki_ca *ca;
  pki_trust *idevid;
  idevid_src idsrc;          /* its files, polled for changes (idevid.h) */
  uint64_t idevid_gen;       /* +1 per reload: sessions classify again */
  bool idevid_allow_expired; /* AUTH-5: an expired IDevID may enroll */
  bool keygen;
  unsigned cert_days;
  size_t max_body;
  uint8_t *csr_attrs; /* DER CsrAttrs served by att, or NULL */
  size_t csr_attrs_len;
  char root[EST_ROOT_MAX];
  char labels[EST_MAX_LABELS][EST_LABEL_MAX];
  size_t label_count;
  est_route routes[EST_MAX_ROUTES];
  size_t route_count;
  enroll_config ecfg;
  enroll *en;      /* the enrollment path (enroll.h) */
  worker *wk;      /* server-side keygen runs here (docs/decisions.md §8) */
  int wk_fd;       /* its eventfd, watched by the host loop */
  worker *signer;  /* signs for a CA key on a token, nothing else (§20) */
  int signer_fd;
  est_job *jobs;   /* every keygen job not yet answered */
  struct crlpub *crl; /* crl_file's publisher, or NULL (crlpub.h) */
  struct est_metrics *metrics; /* NULL: the host has none (metrics.h) */
  struct https_srv *https;     /* EST over HTTPS, or NULL (https.h) */
  pki_trust *ra_trust;         /* CAs of RAs (docs/decisions.md §17), or NULL */
  struct upstream *up;         /* a registrar's upstream CA (upstream.h), or NULL */
  char up_conf[PATH_MAX * 3];  /* its settings, to tell a reload's change */
  char up_cache[PATH_MAX];     /* upstream_cache resolved, "" without one */
  unsigned up_refresh;         /* upstream_refresh, seconds */
  long long up_next;           /* when cacerts/csrattrs are fetched next */
  bool up_fetching;            /* a refresh is running */
  bool up_want_attrs;          /* no local csr_attrs: the upstream's are served */
  bool up_attrs_known;         /* the upstream said what they are (or that there
                                  are none); false: att answers 5.03 */
  uint8_t *up_attrs;           /* the upstream's csrattrs (DER), or NULL */
  size_t up_attrs_len;
  char ra_trust_path[PATH_MAX];
  char https_conf[PATH_MAX * 2]; /* its settings, to tell a reload's change */
  /* What a reload cannot change, to tell the operator (est_reload). */
  char db_file[PATH_MAX];     /* db_path resolved, "" without one */
  char pkcs11_module[PATH_MAX]; /* pkcs11_module resolved, "" without one */
  char crl_path[PATH_MAX];    /* crl_file resolved, "" without one */
  unsigned crl_validity;
  size_t dedup_entries;        /* answers kept per session (dedup.h) */
  size_t block1_transfers;     /* open Block1 transfers per session (body.h) */
  dedup_budget dedup_budget;   /* their bytes, over all sessions */
};

/* Per-DTLS-session state, kept in the host's session slot. */
typedef struct est_session {
  bool classified;
  uint64_t idevid_gen;       /* est_plugin.idevid_gen it was classified at */
  char serial[PKI_SERIAL_HEX_MAX]; /* an LDevID's, for the revocation check */
  pki_client_class cls;
  pki_client_status status;  /* why cls, for the refusal diagnostic */
  uint8_t fp[32];            /* SHA-256 of the client certificate */
  char peer[256];            /* its subject, for logs and the store */
  body_table xfers;          /* open Block1 transfers (body.h) */
  dedup seen;                /* answers to recent CONs, for repeats */
} est_session;

/* One request as it moves through the handler steps. */
typedef struct est_req {
  est_plugin *p;
  const est_route *route;
  coap_resource_t *resource;
  coap_session_t *session;
  const coap_pdu_t *pdu;
  coap_pdu_t *resp;
  const coap_string_t *query;
  est_session *sess;
  unsigned cf_out;
  unsigned max_age;          /* Max-Age for a 5.03, 0: none */
  char diag[EST_DIAG_MAX];
  coap_bin_const_t tok;      /* the request's token and Message ID, */
  uint16_t mid;              /* which name it for repeats (dedup.h) */
  long long now;             /* monotonic seconds at arrival */
  bool record;               /* keep the answer in sess->seen */
  bool separate;             /* it is the separate response (async.c) */
  uint64_t t0_us;            /* arrival, for est_enroll_duration_seconds */
  reply_rec rec;             /* the answer, as reply.c made it */
} est_req;

/* Whether @p fn is served at all (keygen on, csr_attrs given); the CoAP
 * resources and the HTTPS routes follow it (plugin.c). */
bool est_fn_enabled(const est_plugin *p, est_fn fn);

#endif /* EST_PLUGIN_H */
