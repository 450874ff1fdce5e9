/**
 * @file handlers.h
 * @brief The one libcoap handler behind every EST resource: it translates
 * CoAP to and from the enrollment path (request -> policy -> enroll ->
 * reply, docs/architecture.md).
 */
#ifndef EST_HANDLERS_H
#define EST_HANDLERS_H

#include <coap3/coap.h>

void est_handle_request(coap_resource_t *resource, coap_session_t *session,
                        const coap_pdu_t *request, const coap_string_t *query,
                        coap_pdu_t *response);

#endif /* EST_HANDLERS_H */
