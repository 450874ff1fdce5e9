/* Admission control, the libcoap side (admit.h, docs/admission.md).
 *
 * libcoap 4.3.1 reads a DTLS endpoint's socket itself and has no hook
 * before it makes a session for a ClientHello (docs/libcoap-4.3.1.md §7
 * #19-#21). So coapd takes the endpoint sockets out of libcoap's epoll set
 * and into its own: when one is readable it peeks at each datagram, drops
 * the ClientHellos admit_hello() refuses, and lends the socket back to
 * libcoap's epoll set for one coap_io_process() when the datagram at the
 * head may go on. libcoap then reads exactly that datagram. Like reboot.c,
 * the state lives here in the host and every libcoap call that changes a
 * session happens outside its callbacks. */
#define _GNU_SOURCE /* struct in6_pktinfo */
#include "admit.h"
#include "coapd.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

/* All a decision reads: the 13-byte record header and ADMIT_FP_LEN. */
#define PEEK_BYTES 64u
/* Datagrams looked at per endpoint per turn, so timers still run. */
#define FILTER_MAX 256u
/* How often tracked sessions are checked against libcoap's state. */
#define POLL_MS 50u
#define REPORT_MS 5000u
#define VICTIMS_MAX 64u

typedef struct endpoint {
  int fd;
  uint16_t port;
  uint64_t data; /* libcoap's epoll registration, to lend the socket back */
  uint32_t events;
  bool lent;
} endpoint;

static struct {
  admit *a;
  coap_context_t *ctx;
  int coap_epfd;
  endpoint ep[COAPD_CONFIG_MAX_LISTEN];
  size_t nep, next_ep;
  uint64_t next_poll, next_report;
  admit_stats shown;
  uint64_t dropped; /* victims actually disconnected */
} st;

static void peer_from_sa(const struct sockaddr *sa, uint16_t lport, int ifindex, admit_peer *p) {
  memset(p, 0, sizeof *p);
  if (sa->sa_family == AF_INET) {
    struct sockaddr_in sin;
    memcpy(&sin, sa, sizeof sin);
    p->ip[10] = p->ip[11] = 0xff;
    memcpy(p->ip + 12, &sin.sin_addr, 4);
    p->port = ntohs(sin.sin_port);
    p->v4 = true;
  } else if (sa->sa_family == AF_INET6) {
    struct sockaddr_in6 sin6;
    memcpy(&sin6, sa, sizeof sin6);
    memcpy(p->ip, &sin6.sin6_addr, 16);
    p->port = ntohs(sin6.sin6_port);
  }
  p->lport = lport;
  p->ifindex = ifindex;
}

/* The address as libcoap stores it, for coap_address_equals(). */
static void peer_to_addr(const admit_peer *p, coap_address_t *a) {
  coap_address_init(a);
  if (p->v4) {
    a->addr.sin.sin_family = AF_INET;
    memcpy(&a->addr.sin.sin_addr, p->ip + 12, 4);
    a->addr.sin.sin_port = htons(p->port);
    a->size = sizeof a->addr.sin;
  } else {
    a->addr.sin6.sin6_family = AF_INET6;
    memcpy(&a->addr.sin6.sin6_addr, p->ip, 16);
    a->addr.sin6.sin6_port = htons(p->port);
    a->size = sizeof a->addr.sin6;
  }
}

/* The live session of @p p if it is still @p want (NULL when libcoap freed
 * it, even without a SESSION_DEL: coap_session.c frees a session whose
 * GnuTLS state failed without one). Never dereferences @p want. */
static coap_session_t *live(const admit_peer *p, const void *want) {
  coap_address_t a;
  peer_to_addr(p, &a);
  coap_session_t *s = coap_session_get_by_peer(st.ctx, &a, p->ifindex);
  return s && (const void *)s == want ? s : NULL;
}

/* Drop a half-open handshake as reboot.c drops a dead session: the DTLS
 * state goes now, libcoap frees the session (state NONE) on its next
 * turn. Only one still in the handshake: never an established one. */
static bool drop(const admit_victim *v, const char *why) {
  coap_session_t *s = live(&v->peer, v->session);
  if (!s || coap_session_get_type(s) != COAP_SESSION_TYPE_SERVER ||
      coap_session_get_state(s) != COAP_SESSION_STATE_HANDSHAKE)
    return false;
  coapd_log(COAPD_LOG_DEBUG, "half-open handshake %s %s", coap_session_str(s), why);
  coap_session_disconnected(s, COAP_NACK_NOT_DELIVERABLE);
  st.dropped++;
  return true;
}

/* Park a HELLO session (admit.h): its GnuTLS state goes, and the
 * reference coapd holds keeps libcoap from counting it against
 * max_handshake_sessions (coap_session.c counts unreferenced ones only). */
static void park_one(const admit_victim *v) {
  coap_session_t *s = live(&v->peer, v->session);
  if (!s || coap_session_get_type(s) != COAP_SESSION_TYPE_HELLO) {
    admit_mark(st.a, v->session, ADMIT_DONE);
    return;
  }
  coap_session_disconnected(s, COAP_NACK_NOT_DELIVERABLE);
  coap_session_reference(s);
}

/* An eviction victim: drop one past the cookie, park a HELLO; an
 * unparked HELLO libcoap frees by itself on the next read. */
static void evict(const admit_victim *v) {
  if (v->stage == ADMIT_HANDSHAKE)
    (void)drop(v, "evicted for a new one");
  else if (v->stage == ADMIT_HELLO && !v->expiring)
    park_one(v);
}

/* Bring the tracked stages up to date with libcoap's (a parked session
 * stays as it is: coapd holds it). */
static void poll_stages(void) {
  for (size_t i = admit_count(st.a); i-- > 0;) {
    if (admit_stage_at(st.a, i) == ADMIT_PARKED)
      continue;
    coap_session_t *s = live(admit_peer_at(st.a, i), admit_session_at(st.a, i));
    admit_stage stage = ADMIT_DONE;
    if (s && coap_session_get_type(s) == COAP_SESSION_TYPE_HELLO)
      stage = ADMIT_HELLO;
    else if (s && coap_session_get_type(s) == COAP_SESSION_TYPE_SERVER &&
             coap_session_get_state(s) == COAP_SESSION_STATE_HANDSHAKE)
      stage = ADMIT_HANDSHAKE;
    admit_mark_at(st.a, i, stage);
  }
}

/* "FILE:LINE" of the dtls_admission line, or "FILE" for the default. */
static const char *where(const coapd_config *cfg, char *buf, size_t len) {
  if (cfg->dtls_admission.line)
    snprintf(buf, len, "%s:%u", cfg->path, cfg->dtls_admission.line);
  else
    snprintf(buf, len, "%s", cfg->path);
  return buf;
}

/* Find libcoap's socket for every listen line: the UDP sockets in its
 * epoll set (proc(5), /proc/PID/fdinfo of an epoll fd lists each target
 * fd with the data it was registered with). */
static est_err find_endpoints(const coapd_config *cfg, char *err, size_t errlen) {
  est_err rc = EST_ERR_IO;
  char path[64], line[256], w[COAPD_CONFIG_MAX_PATH + 16];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", st.coap_epfd);
  FILE *f = fopen(path, "re");
  if (!f) {
    coapd_errf(err, errlen, "%s: dtls_admission: cannot read %s: %s",
               where(cfg, w, sizeof w), path, strerror(errno));
    goto out;
  }
  while (fgets(line, sizeof line, f) && st.nep < COAPD_CONFIG_MAX_LISTEN) {
    int fd, type = 0;
    unsigned events;
    unsigned long long data;
    socklen_t tl = sizeof type;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (sscanf(line, "tfd: %d events: %x data: %llx", &fd, &events, &data) != 3 ||
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_DGRAM ||
        getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
      continue;
    admit_peer me;
    peer_from_sa((const struct sockaddr *)&ss, 0, 0, &me);
    for (size_t i = 0; i < cfg->nlisten; i++) {
      if (cfg->listen[i].port == me.port) {
        st.ep[st.nep++] = (endpoint){.fd = fd, .port = me.port, .data = data, .events = events};
        break;
      }
    }
  }
  fclose(f);
  if (st.nep != cfg->nlisten) {
    coapd_errf(err, errlen,
               "%s: dtls_admission: found %zu of libcoap's %zu endpoint sockets "
               "(docs/admission.md)",
               where(cfg, w, sizeof w), st.nep, cfg->nlisten);
    goto out;
  }
  rc = EST_OK;
out:
  return rc;
}

est_err coapd_admit_setup(coapd_app *app, char *err, size_t errlen) {
  const coapd_config *cfg = app->cfg;
  est_err rc = EST_OK;
  uint8_t key[16];
  if (!cfg->dtls_admission.value) {
    coapd_log(COAPD_LOG_NOTICE,
              "%s:%u: dtls_admission no: a ClientHello flood can lock clients out "
              "(docs/admission.md)",
              cfg->path, cfg->dtls_admission.line);
    goto out;
  }
  admit_limits lim = {.max_total = cfg->max_handshake_sessions.value,
                      .per_addr = cfg->max_handshakes_per_addr.value,
                      .pressure = cfg->handshake_pressure.value,
                      .timeout_ms = cfg->handshake_timeout.value * 1000u,
                      .park_max = cfg->max_parked_handshakes.value};
  if (getrandom(key, sizeof key, 0) != (ssize_t)sizeof key) {
    coapd_errf(err, errlen, "dtls_admission: getrandom: %s", strerror(errno));
    rc = EST_ERR_IO;
    goto out;
  }
  memset(&st, 0, sizeof st);
  st.ctx = app->ctx;
  st.coap_epfd = coap_context_get_coap_fd(app->ctx);
  if ((rc = find_endpoints(cfg, err, errlen)) != EST_OK)
    goto out;
  if ((rc = admit_new(&lim, key, &st.a)) != EST_OK) {
    coapd_errf(err, errlen, "dtls_admission: out of memory");
    goto out;
  }
  for (size_t i = 0; i < st.nep; i++) {
    if (epoll_ctl(st.coap_epfd, EPOLL_CTL_DEL, st.ep[i].fd, NULL) != 0) {
      coapd_errf(err, errlen, "dtls_admission: epoll_ctl: %s", strerror(errno));
      rc = EST_ERR_IO;
      goto out;
    }
  }
  coapd_log(COAPD_LOG_INFO,
            "admission control: %u half-open handshakes per address, pressure from %u, "
            "handshake_timeout %u s under pressure",
            lim.per_addr, lim.pressure, cfg->handshake_timeout.value);
out:
  if (rc != EST_OK) {
    admit_free(st.a);
    memset(&st, 0, sizeof st);
  }
  return rc;
}

size_t coapd_admit_fds(int *fds, size_t max) {
  size_t n = 0;
  for (size_t i = 0; st.a && i < st.nep && n < max; i++)
    fds[n++] = st.ep[i].fd;
  return n;
}

/* A datagram from a parked peer: libcoap would give it to the parked
 * session, so it goes on only as a ClientHello that finds room. */
static bool wake(const uint8_t *d, size_t have, const admit_peer *p, uint64_t now_ms) {
  admit_victim v;
  void *session;
  if (!admit_is_hello(d, have) || admit_wake(st.a, p, now_ms, &session, &v) != ADMIT_PASS)
    return false;
  coap_session_t *s = live(p, session);
  if (!s) {
    admit_mark(st.a, session, ADMIT_DONE);
    return true;
  }
  /* Counted again; libcoap makes new GnuTLS state for it on this read. */
  coap_session_release(s);
  if (v.session)
    evict(&v);
  return true;
}

/* May libcoap read this datagram? */
static bool may_pass(const uint8_t *d, size_t have, const admit_peer *p, uint64_t now_ms) {
  admit_victim v;
  coap_address_t a;
  if (admit_parked(st.a, p))
    return wake(d, have, p, now_ms);
  /* A peer in the handshake: alive; everything else that is not a
   * ClientHello libcoap drops without making state. */
  if (admit_seen(st.a, p, now_ms) || !admit_is_hello(d, have))
    return true;
  /* A session's peer: a retransmission, or a reboot (reboot.h). */
  peer_to_addr(p, &a);
  if (coap_session_get_by_peer(st.ctx, &a, p->ifindex))
    return true;
  if (admit_hello(st.a, p, d, have, now_ms, &v) != ADMIT_PASS)
    return false;
  if (v.session)
    evict(&v);
  return true;
}

static int ifindex_of(struct msghdr *mh) {
  int idx = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
      struct in_pktinfo pi;
      memcpy(&pi, CMSG_DATA(c), sizeof pi);
      idx = pi.ipi_ifindex;
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      struct in6_pktinfo pi;
      memcpy(&pi, CMSG_DATA(c), sizeof pi);
      idx = (int)pi.ipi6_ifindex;
    }
  }
  return idx;
}

/* Drop refused datagrams at the head of @p e; true when one that may pass
 * is at the head. */
static bool filter_one(endpoint *e, uint64_t now_ms) {
  for (unsigned k = 0; k < FILTER_MAX; k++) {
    uint8_t buf[PEEK_BYTES];
    union {
      char b[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(struct in_pktinfo))];
      struct cmsghdr align;
    } cbuf;
    struct sockaddr_storage ss;
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
    struct msghdr mh = {.msg_name = &ss,
                        .msg_namelen = sizeof ss,
                        .msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = cbuf.b,
                        .msg_controllen = sizeof cbuf.b};
    /* MSG_TRUNC: the real length, though only PEEK_BYTES are copied. */
    ssize_t r = recvmsg(e->fd, &mh, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return errno != EAGAIN && errno != EWOULDBLOCK; /* libcoap reports it */
    admit_peer p;
    peer_from_sa((const struct sockaddr *)&ss, e->port, ifindex_of(&mh), &p);
    size_t have = (size_t)r < sizeof buf ? (size_t)r : sizeof buf;
    if (may_pass(buf, have, &p, now_ms))
      return true;
    /* Take it off the queue; libcoap never sees it. */
    (void)recv(e->fd, buf, 1, MSG_DONTWAIT);
  }
  return false;
}

int coapd_admit_filter(uint64_t now_ms) {
  if (!st.a)
    return 0;
  /* One endpoint per coap_io_process(), taken in turn, so libcoap reads
   * one datagram from one socket: the one decided on. */
  for (size_t k = 0; k < st.nep; k++) {
    endpoint *e = &st.ep[(st.next_ep + k) % st.nep];
    if (!filter_one(e, now_ms))
      continue;
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = e->events;
    ev.data.u64 = e->data;
    if (epoll_ctl(st.coap_epfd, EPOLL_CTL_ADD, e->fd, &ev) != 0) {
      coapd_log(COAPD_LOG_ERR, "admission: epoll_ctl: %s", strerror(errno));
      return 0;
    }
    e->lent = true;
    st.next_ep = (st.next_ep + k + 1) % st.nep;
    return 1;
  }
  return 0;
}

static void report(bool always) {
  const admit_stats *s = admit_get_stats(st.a);
  if (!always && memcmp(s, &st.shown, sizeof *s) == 0)
    return;
  st.shown = *s;
  coapd_log(COAPD_LOG_NOTICE,
            "admission%s: %" PRIu64 " ClientHellos let through, %" PRIu64
            " dropped as first sightings, %" PRIu64 " dropped for lack of room; %" PRIu64
            " half-open handshakes evicted, %" PRIu64 " timed out (%" PRIu64
            " dropped), %" PRIu64 " silent ones parked (%" PRIu64
            " came back); %zu half-open now, %zu parked",
            always ? " totals" : "", s->passed, s->drop_first, s->drop_full, s->evicted,
            s->expired, st.dropped, s->parked, s->woken, admit_active_count(st.a),
            admit_parked_count(st.a));
}

/* Park the HELLO sessions gone silent; let go the ones parked long
 * enough (admit.h). */
static void park(uint64_t now_ms) {
  admit_victim v[VICTIMS_MAX];
  size_t n = admit_park(st.a, now_ms, v, VICTIMS_MAX);
  for (size_t i = 0; i < n; i++)
    park_one(&v[i]);
  n = admit_unpark_due(st.a, now_ms, v, VICTIMS_MAX);
  for (size_t i = 0; i < n; i++) {
    coap_session_t *s = live(&v[i].peer, v[i].session);
    if (s)
      coap_session_release(s);
  }
}

/* Let every parked session go: before coap_free_context(), which frees
 * only unreferenced sessions. */
static void unpark_all(void) {
  for (size_t i = 0; i < admit_count(st.a); i++) {
    if (admit_stage_at(st.a, i) != ADMIT_PARKED)
      continue;
    coap_session_t *s = live(admit_peer_at(st.a, i), admit_session_at(st.a, i));
    if (s)
      coap_session_release(s);
  }
}

void coapd_admit_after(uint64_t now_ms) {
  if (!st.a)
    return;
  for (size_t i = 0; i < st.nep; i++) {
    if (st.ep[i].lent) {
      (void)epoll_ctl(st.coap_epfd, EPOLL_CTL_DEL, st.ep[i].fd, NULL);
      st.ep[i].lent = false;
    }
  }
  if (now_ms >= st.next_poll) {
    admit_victim v[VICTIMS_MAX];
    poll_stages();
    size_t n = admit_expire(st.a, now_ms, v, VICTIMS_MAX);
    for (size_t i = 0; i < n; i++)
      (void)drop(&v[i], "timed out (handshake_timeout)");
    park(now_ms);
    st.next_poll = now_ms + POLL_MS;
  }
  if (now_ms >= st.next_report) {
    report(false);
    st.next_report = now_ms + REPORT_MS;
  }
}

int coapd_admit_next_ms(uint64_t now_ms) {
  if (!st.a || admit_count(st.a) == 0)
    return -1;
  return st.next_poll <= now_ms ? 0 : (int)(st.next_poll - now_ms);
}

void coapd_admit_session(coap_session_t *session, int created) {
  if (!st.a)
    return;
  if (!created) {
    admit_mark(st.a, session, ADMIT_DONE);
    return;
  }
  admit_peer p;
  const coap_address_t *r = coap_session_get_addr_remote(session);
  const coap_address_t *l = coap_session_get_addr_local(session);
  if (!r || !l)
    return;
  peer_from_sa(&r->addr.sa, coap_address_get_port(l), coap_session_get_ifindex(session), &p);
  admit_track(st.a, session, &p, coapd_now_ms());
}

void coapd_admit_shutdown(void) {
  if (!st.a)
    return;
  report(true);
  unpark_all();
  /* Give the sockets back, so libcoap's own teardown finds them. */
  for (size_t i = 0; i < st.nep; i++) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = st.ep[i].events;
    ev.data.u64 = st.ep[i].data;
    if (!st.ep[i].lent)
      (void)epoll_ctl(st.coap_epfd, EPOLL_CTL_ADD, st.ep[i].fd, &ev);
  }
  admit_free(st.a);
  memset(&st, 0, sizeof st);
}
