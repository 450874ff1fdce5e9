/* Private to the plugin: its state and the resource routes. */
#ifndef EST_PLUGIN_H
#define EST_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <coapd/plugin.h>

#include "body.h"
#include "pki.h"
#include "pop.h"
#include "proto.h"

#define EST_MAX_LABELS 16
#define EST_LABEL_MAX 32
#define EST_ROOT_MAX 64
/* Two roots, each unlabelled plus every label, times the functions. */
#define EST_MAX_ROUTES (2 * (1 + EST_MAX_LABELS) * EST_FN__MAX)

typedef struct est_plugin est_plugin;

/* What a resource serves; set as the libcoap resource's user data. */
typedef struct est_route {
  est_plugin *p;
  est_fn fn;
  const char *label; /* NULL if none; points into est_plugin.labels */
} est_route;

struct est_plugin {
  const coapd_host_api *api;
  pki_ca *ca;
  pki_trust *idevid;
  pop_mode pop;
  bool keygen;
  pki_key_type keygen_type;
  unsigned cert_days;
  size_t max_body;
  uint8_t *csr_attrs; /* DER CsrAttrs served by att, or NULL */
  size_t csr_attrs_len;
  char root[EST_ROOT_MAX];
  char labels[EST_MAX_LABELS][EST_LABEL_MAX];
  size_t label_count;
  est_route routes[EST_MAX_ROUTES];
  size_t route_count;
};

/* Per-DTLS-session state, kept in the host's session slot. */
typedef struct est_session {
  bool classified;
  pki_client_class cls;
  char peer[128];            /* leaf subject, for logs */
  const void *body_owner;    /* the resource the partial body is for */
  body_asm body;
} est_session;

/* The one libcoap handler behind every EST resource (handlers.c). */
void est_handle_request(coap_resource_t *resource, coap_session_t *session,
                        const coap_pdu_t *request, const coap_string_t *query,
                        coap_pdu_t *response);

#endif /* EST_PLUGIN_H */
