/* Reboot recovery for DTLS sessions (reboot.h). The log handler and the
 * nack handler have no user pointer in libcoap 4.3.1, so the state lives
 * here, in the host program (never in a plugin). */
#include "reboot.h"

#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "coapd.h"

#define REMOTE_MAX 64

typedef struct sighting {
  char remote[REMOTE_MAX];
  int ifindex;
} sighting;

typedef struct probe {
  coap_session_t *session; /* NULL: free slot */
  coap_mid_t mid;
  uint64_t deadline_ms;
} probe;

static struct {
  bool on;
  sighting seen[REBOOT_PROBES_MAX];
  size_t nseen;
  probe probes[REBOOT_PROBES_MAX];
} st = {.on = true};

void reboot_enable(bool on) { st.on = on; }

bool reboot_parse_line(const char *line, char *remote, size_t remote_len, int *ifindex) {
  /* "** LOCAL <-> REMOTE (ifN) DTLS: Discarded message[K] with invalid epoch 0." */
  if (!line || !strstr(line, "with invalid epoch 0"))
    return false;
  const char *arrow = strstr(line, " <-> ");
  if (!arrow)
    return false;
  const char *r = arrow + 5;
  const char *end = strstr(r, " (if");
  if (!end || end == r || (size_t)(end - r) >= remote_len)
    return false;
  memcpy(remote, r, (size_t)(end - r));
  remote[end - r] = '\0';
  int idx = -1;
  if (sscanf(end, " (if%d)", &idx) != 1 || idx < 0)
    return false;
  *ifindex = idx;
  return true;
}

bool reboot_parse_addr(const char *text, coap_address_t *out) {
  char host[REMOTE_MAX];
  const char *colon;
  size_t hlen;
  unsigned port = 0;
  char extra;
  if (!text || strlen(text) >= sizeof host)
    return false;
  if (text[0] == '[') {
    const char *close = strchr(text, ']');
    if (!close || close[1] != ':')
      return false;
    hlen = (size_t)(close - text - 1);
    colon = close + 1;
    memcpy(host, text + 1, hlen);
  } else {
    colon = strrchr(text, ':');
    if (!colon)
      return false;
    hlen = (size_t)(colon - text);
    memcpy(host, text, hlen);
  }
  host[hlen] = '\0';
  if (sscanf(colon + 1, "%u%c", &port, &extra) != 1 || port == 0 || port > 65535)
    return false;
  /* libcoap prints IPv6 in brackets (coap_print_addr); bare is IPv4. */
  if ((text[0] == '[') != (strchr(host, ':') != NULL))
    return false;
  return coapd_addr_set(out, host, (uint16_t)port);
}

void reboot_note_line(const char *line) {
  sighting s;
  if (!st.on || st.nseen >= REBOOT_PROBES_MAX ||
      !reboot_parse_line(line, s.remote, sizeof s.remote, &s.ifindex))
    return;
  st.seen[st.nseen++] = s;
}

static probe *probe_of(const coap_session_t *session) {
  for (size_t i = 0; i < REBOOT_PROBES_MAX; i++)
    if (st.probes[i].session == session)
      return &st.probes[i];
  return NULL;
}

static void start_probe(coap_context_t *ctx, const sighting *s, uint64_t now_ms) {
  coap_address_t addr;
  if (!reboot_parse_addr(s->remote, &addr))
    return;
  coap_session_t *session = coap_session_get_by_peer(ctx, &addr, s->ifindex);
  if (!session || probe_of(session))
    return;
  probe *p = probe_of(NULL);
  if (!p)
    return; /* all slots busy: the next sighting tries again */
  coap_mid_t mid = coap_session_send_ping(session);
  if (mid == COAP_INVALID_MID)
    return;
  p->session = session;
  p->mid = mid;
  p->deadline_ms = now_ms + REBOOT_PROBE_MS;
  coapd_log(COAPD_LOG_INFO, "a new DTLS ClientHello from %s hit its established session: "
                            "probing it (RFC 6347 section 4.2.8)", s->remote);
}

void reboot_run(coap_context_t *ctx, uint64_t now_ms) {
  for (size_t i = 0; i < st.nseen; i++)
    start_probe(ctx, &st.seen[i], now_ms);
  st.nseen = 0;
  for (size_t i = 0; i < REBOOT_PROBES_MAX; i++) {
    probe *p = &st.probes[i];
    if (!p->session || now_ms < p->deadline_ms)
      continue;
    coap_session_t *session = p->session;
    memset(p, 0, sizeof *p);
    coapd_log(COAPD_LOG_NOTICE, "session %s did not answer after a new ClientHello from its "
                                "address: dropped, so the device can handshake again",
              coap_session_str(session));
    /* The DTLS state goes now; libcoap frees the session on its next
     * turn (state NONE), and the next ClientHello makes a new one. */
    coap_session_disconnected(session, COAP_NACK_NOT_DELIVERABLE);
  }
}

int reboot_next_ms(uint64_t now_ms) {
  uint64_t next = UINT64_MAX;
  for (size_t i = 0; i < REBOOT_PROBES_MAX; i++)
    if (st.probes[i].session && st.probes[i].deadline_ms < next)
      next = st.probes[i].deadline_ms;
  if (next == UINT64_MAX)
    return -1;
  return next <= now_ms ? 0 : (int)(next - now_ms);
}

void reboot_answered(coap_session_t *session, coap_mid_t mid) {
  probe *p = probe_of(session);
  if (p && p->mid == mid) {
    memset(p, 0, sizeof *p);
    coapd_log(COAPD_LOG_INFO, "session %s answered: it is live, the ClientHello is ignored",
              coap_session_str(session));
  }
}

void reboot_forget(coap_session_t *session) {
  probe *p = probe_of(session);
  if (p)
    memset(p, 0, sizeof *p);
}
