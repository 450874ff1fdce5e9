/* The I/O loop: one epoll set holding libcoap's own epoll fd (Debian builds
 * libcoap with epoll, docs/libcoap-4.3.1.md §5 variant B), a timerfd for plugin
 * ticks, a signalfd for SIGTERM/SIGINT/SIGHUP and the fds plugins watch. */
#include "coapd.h"
#include "metrics.h"
#include "reboot.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

/* epoll data.u64 tags; plugin watches use TAG_WATCH + slot index. */
enum { TAG_COAP = 0, TAG_TIMER = 1, TAG_SIGNAL = 2, TAG_WATCH = 3 };
/* The DTLS endpoint sockets admission control takes from libcoap. */
#define TAG_ADMIT ((uint64_t)TAG_WATCH + COAPD_WATCH_MAX)
/* coap_io_process() calls per wake-up while datagrams wait (each reads
 * one), so a flood cannot keep the loop from the signal and timer fds. */
#define TURNS_MAX 64

#define EVENTS_MAX 32

typedef struct watch {
  int fd; /* -1 = free slot */
  coapd_host *owner;
  coapd_fd_cb cb;
  void *arg;
} watch;

struct coapd_loop {
  coapd_app *app;
  int ep, tfd, sfd, coap_fd;
  watch w[COAPD_WATCH_MAX];
};

uint64_t coapd_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int add_fd(int ep, int fd, uint64_t tag) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  ev.data.u64 = tag;
  return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

/* Arm the tick timer for @p ms from now; 0 disarms it (no plugin ticks). */
static void arm(coapd_loop *l, uint32_t ms) {
  struct itimerspec its;
  memset(&its, 0, sizeof its);
  its.it_value.tv_sec = ms / 1000u;
  its.it_value.tv_nsec = (long)(ms % 1000u) * 1000000L;
  (void)timerfd_settime(l->tfd, 0, &its, NULL);
}

est_err coapd_loop_new(coapd_app *app, coapd_loop **out) {
  est_err rc = EST_ERR_IO;
  coapd_loop *l = calloc(1, sizeof *l);
  *out = NULL;
  if (!l)
    return EST_ERR_NOMEM;
  l->app = app;
  l->ep = l->tfd = l->sfd = -1;
  for (size_t i = 0; i < COAPD_WATCH_MAX; i++)
    l->w[i].fd = -1;

  l->coap_fd = coap_context_get_coap_fd(app->ctx);
  if (l->coap_fd < 0) {
    coapd_log(COAPD_LOG_ERR, "libcoap has no epoll fd (built without epoll)");
    goto out;
  }
  /* SIGTERM/SIGINT are blocked in main() before anything else, so they
   * arrive here; no handler, no global flag. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  l->ep = epoll_create1(EPOLL_CLOEXEC);
  l->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  l->sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (l->ep < 0 || l->tfd < 0 || l->sfd < 0 ||
      add_fd(l->ep, l->coap_fd, TAG_COAP) != 0 ||
      add_fd(l->ep, l->tfd, TAG_TIMER) != 0 ||
      add_fd(l->ep, l->sfd, TAG_SIGNAL) != 0) {
    coapd_log(COAPD_LOG_ERR, "loop setup: %s", strerror(errno));
    goto out;
  }
  int afd[COAPD_CONFIG_MAX_LISTEN];
  size_t nafd = coapd_admit_fds(afd, COAPD_CONFIG_MAX_LISTEN);
  for (size_t i = 0; i < nafd; i++) {
    if (add_fd(l->ep, afd[i], TAG_ADMIT) != 0) {
      coapd_log(COAPD_LOG_ERR, "loop setup: %s", strerror(errno));
      goto out;
    }
  }
  *out = l;
  l = NULL;
  rc = EST_OK;
out:
  coapd_loop_free(l);
  return rc;
}

void coapd_loop_free(coapd_loop *l) {
  if (!l)
    return;
  if (l->ep >= 0)
    close(l->ep);
  if (l->tfd >= 0)
    close(l->tfd);
  if (l->sfd >= 0)
    close(l->sfd);
  free(l);
}

int coapd_loop_watch(coapd_loop *l, coapd_host *owner, int fd, coapd_fd_cb cb,
                     void *arg) {
  if (fd < 0 || !cb)
    return -1;
  size_t free_slot = COAPD_WATCH_MAX;
  for (size_t i = 0; i < COAPD_WATCH_MAX; i++) {
    if (l->w[i].fd == fd)
      return -1; /* already watched */
    if (l->w[i].fd < 0 && free_slot == COAPD_WATCH_MAX)
      free_slot = i;
  }
  if (free_slot == COAPD_WATCH_MAX) {
    coapd_log(COAPD_LOG_ERR, "watch_fd: more than %u fds", COAPD_WATCH_MAX);
    return -1;
  }
  if (add_fd(l->ep, fd, TAG_WATCH + free_slot) != 0) {
    coapd_log(COAPD_LOG_ERR, "watch_fd %d: %s", fd, strerror(errno));
    return -1;
  }
  l->w[free_slot] = (watch){fd, owner, cb, arg};
  return 0;
}

static void drop(coapd_loop *l, size_t i) {
  (void)epoll_ctl(l->ep, EPOLL_CTL_DEL, l->w[i].fd, NULL);
  l->w[i] = (watch){-1, NULL, NULL, NULL};
}

int coapd_loop_unwatch(coapd_loop *l, coapd_host *owner, int fd) {
  for (size_t i = 0; i < COAPD_WATCH_MAX; i++) {
    if (l->w[i].fd == fd && fd >= 0 && l->w[i].owner == owner) {
      drop(l, i);
      return 0;
    }
  }
  return -1;
}

void coapd_loop_unwatch_all(coapd_loop *l, coapd_host *owner) {
  for (size_t i = 0; i < COAPD_WATCH_MAX; i++) {
    if (l->w[i].fd >= 0 && l->w[i].owner == owner) {
      coapd_log(COAPD_LOG_WARNING, "plugin left fd %d watched; dropped",
                l->w[i].fd);
      drop(l, i);
    }
  }
}

/* The timer fired: tick the plugins that are due and sleep until the next
 * deadline of any plugin, so one that asks for 10 s sleeps 10 s however
 * often another ticks (tick.h). libcoap's timers need no slot here: they
 * wake its own fd. */
static void tick(coapd_loop *l) {
  uint64_t expirations;
  ssize_t r = read(l->tfd, &expirations, sizeof expirations);
  (void)r;
  uint64_t next = coapd_plugins_tick(l->app, coapd_now_ms());
  /* Read the clock again: the ticks themselves took time. */
  arm(l, coapd_tick_wait(next, coapd_now_ms()));
}

/* Returns 1 when a stop signal came; SIGHUP reloads (reload.c). */
static int got_signal(coapd_loop *l) {
  struct signalfd_siginfo si;
  int stop = 0;
  while (read(l->sfd, &si, sizeof si) == (ssize_t)sizeof si) {
    if (si.ssi_signo == SIGHUP) {
      coapd_reload(l->app);
      continue;
    }
    coapd_log(COAPD_LOG_NOTICE, "coapd: signal %u, shutting down",
              (unsigned)si.ssi_signo);
    stop = 1;
  }
  return stop;
}

/* The sooner of two epoll timeouts (-1: none). */
static int sooner(int a, int b) {
  if (a < 0)
    return b;
  return b < 0 || a < b ? a : b;
}

/* One non-blocking libcoap pass, or one per datagram admission control
 * lets through (host/admit_io.c), never from inside a handler. */
static void coap_turn(coapd_loop *l) {
  for (int i = 0; i < TURNS_MAX; i++) {
    int more = coapd_admit_filter(coapd_now_ms());
    coap_io_process(l->app->ctx, COAP_IO_NO_WAIT);
    coapd_admit_after(coapd_now_ms());
    if (!more)
      break;
  }
}

est_err coapd_loop_run(coapd_loop *l) {
  struct epoll_event ev[EVENTS_MAX];
  /* Prime libcoap once so its timers are armed, and tick every plugin
   * once right away (the first tick sets the schedule). */
  coap_turn(l);
  arm(l, COAPD_TICK_MIN_MS);
  for (;;) {
    /* Infinite, unless a reboot probe, an admission poll or an HTTP
     * timeout is due (host/reboot.h, host/admit.h, host/metrics.h). */
    uint64_t now = coapd_now_ms();
    int n = epoll_wait(l->ep, ev, EVENTS_MAX,
                       sooner(sooner(reboot_next_ms(now), coapd_admit_next_ms(now)),
                              coapd_metrics_next_ms(l->app)));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      coapd_log(COAPD_LOG_ERR, "epoll_wait: %s", strerror(errno));
      return EST_ERR_IO;
    }
    int stop = 0, ran_plugin = 0, coap_ready = 0;
    for (int i = 0; i < n; i++) {
      uint64_t tag = ev[i].data.u64;
      if (tag == TAG_COAP || tag == TAG_ADMIT) {
        coap_ready = 1;
      } else if (tag == TAG_TIMER) {
        tick(l);
        ran_plugin = 1;
      } else if (tag == TAG_SIGNAL) {
        stop |= got_signal(l);
        ran_plugin = 1; /* a reload may have queued work */
      } else if (tag - TAG_WATCH < COAPD_WATCH_MAX) {
        watch *w = &l->w[tag - TAG_WATCH];
        /* It may have been unwatched by an earlier callback this round. */
        if (w->fd >= 0) {
          w->cb(w->arg);
          ran_plugin = 1;
        }
      }
    }
    if (stop)
      return EST_OK;
    coapd_metrics_due(l->app); /* idle HTTP connections time out */
    /* Plugin code outside a handler may have queued PDUs or triggered an
     * async; one non-blocking pass sends them and re-arms libcoap's timer.
     * Never called from inside a handler. */
    if (coap_ready || ran_plugin) {
      coap_turn(l);
      reboot_run(l->app->ctx, coapd_now_ms());
    } else if (n == 0) {
      /* A probe or poll is due: drop the session, then let libcoap free it. */
      reboot_run(l->app->ctx, coapd_now_ms());
      coap_turn(l);
    }
  }
}
