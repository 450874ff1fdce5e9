/* estctl: the operator CLI of est-coaps. Every command builds the same JSON
 * command object the broker plugin receives on $CONTROL/est-coaps/v1 and
 * runs it through ctl_run() (control/ctl.h); only the output formatting
 * lives here.
 *
 * Exit status: 0 ok, 1 a command failed, 2 usage error, 3 database
 * unavailable (missing, busy, unreadable). */
#define _DEFAULT_SOURCE /* timegm */
#define _XOPEN_SOURCE 700 /* strptime; POSIX.1-2008 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <gnutls/gnutls.h>

#include "control/ctl.h"
#include "store/store.h"

enum {
  EXIT_OK = 0,
  EXIT_FAILED = 1,
  EXIT_USAGE = 2,
  EXIT_DB = 3,
};

#define DEFAULT_BUSY_MS 5000
#define MAX_BUSY_MS 600000
/* Widest subject/client cell in a table; `show` prints them whole. */
#define CELL_MAX 48
/* Largest JSON integer (2^53 - 1): ids travel as JSON numbers. */
#define ID_MAX 9007199254740991LL

typedef struct app {
  const char *db_path;
  const char *actor;
  char actor_buf[256];
  int busy_ms;
  store *s;
  bool read_only;
} app;

/* ------------------------------------------------------------ help */

static const char usage_main[] =
  "usage: estctl --db PATH [--actor NAME] [--busy-timeout MS] COMMAND [ARGS]\n"
  "\n"
  "Operator tool of est-coaps: decide enrollment requests that wait for\n"
  "approval, manage pre-authorisations, list and revoke certificates, and\n"
  "read the audit trail.\n"
  "\n"
  "commands:\n"
  "  list [--state STATE] [FILTER] [--json]\n"
  "                                       list requests\n"
  "  show ID [--json]                     one request and its audit trail\n"
  "  approve (ID... | FILTER) [--reason TEXT] [--dry-run]\n"
  "                                       approve pending requests\n"
  "  reject (ID... | FILTER) --reason TEXT [--dry-run]\n"
  "                                       reject pending requests\n"
  "  preauth add (--subject DN [--idevid SHA256HEX] | --idevid SHA256HEX)\n"
  "              [--note TEXT]\n"
  "  preauth remove (--subject DN | --idevid SHA256HEX)\n"
  "  preauth list [--json]                pre-authorised clients\n"
  "  certs [--json]                       issued certificates\n"
  "  revoke SERIAL --reason REASON        revoke a certificate (RFC 5280 reason)\n"
  "  crl --out FILE [--pem]               the CRL coapd published last\n"
  "  backup FILE                          a consistent copy while coapd runs\n"
  "  init [--group NAME]                  create an empty database (0600)\n"
  "  prune (--before DATE | --older-than AGE) [--dry-run]\n"
  "                                       drop old decided requests and audit rows\n"
  "  audit [--request ID] [--limit N] [--json]\n"
  "                                       audit trail, newest first\n"
  "  raw [JSON | -]                       run a control envelope\n"
  "                                       {\"commands\":[...]} as the broker does\n"
  "  events [--after ID] [--limit N]      the events the broker publishes\n"
  "\n"
  "FILTER: --subject TEXT, --san TEXT, --client TEXT, --older-than AGE,\n"
  "        --newer-than AGE (see 'estctl list --help')\n"
  "\n"
  "options:\n"
  "  --db PATH           the est-coaps database; only init creates one\n"
  "  --actor NAME        name written to the audit trail, with the login\n"
  "                      name after it: \"NAME (unix LOGIN)\" (default: LOGIN)\n"
  "  --busy-timeout MS   how long to wait for a locked database (default "
  "5000)\n"
  "  -h, --help          this help; 'estctl COMMAND --help' for one command\n"
  "  -V, --version       print the version\n"
  "\n"
  "exit status: 0 ok, 1 a command failed, 2 usage error, 3 database\n"
  "unavailable (missing, busy or unreadable)\n";

static const char help_list[] =
  "usage: estctl --db PATH list [--state STATE] [FILTER] [--json]\n"
  "\n"
  "List enrollment requests, oldest first, with what each CSR asks for\n"
  "(subject, SANs, key) and the client certificate it came with (subject,\n"
  "serial, SHA-256 fingerprint). STATE is one of pending, approved,\n"
  "rejected, issued, expired (default: all). Filters (all must match;\n"
  "text matches ignore ASCII case):\n"
  "  --subject TEXT      the CSR subject contains TEXT\n"
  "  --san TEXT          one of the CSR's SANs contains TEXT\n"
  "  --client TEXT       the client certificate's subject contains TEXT, or\n"
  "                      its SHA-256 fingerprint starts with TEXT (hex, ':' ok)\n"
  "  --older-than AGE    created at least AGE ago; AGE is N[s|m|h|d|w], e.g. 2h\n"
  "  --newer-than AGE    created less than AGE ago, e.g. 30m\n"
  "  --json              print a JSON array of request objects\n";

static const char help_show[] =
  "usage: estctl --db PATH show ID [--json]\n"
  "\n"
  "Show one request, the serial of its certificate if issued, and its audit\n"
  "trail (oldest first).\n"
  "Shows the CSR's subject, SANs and key, and the client certificate's\n"
  "subject, serial and SHA-256 fingerprint ('-' when not recorded).\n"
  "  --json   print the request object with an \"audit\" member\n";

static const char help_approve[] =
  "usage: estctl --db PATH approve (ID... | FILTER) [--reason TEXT] [--dry-run]\n"
  "\n"
  "Approve pending requests, by ID or every pending request a FILTER\n"
  "matches (--subject, --san, --client, --older-than, --newer-than as in\n"
  "'estctl list --help'). The device gets its certificate at its next\n"
  "retry. Each request is decided on its own, with its audit row; the exit\n"
  "status is non-zero if any failed or the filter matches nothing.\n"
  "  --dry-run   print what would be approved and change nothing\n";

static const char help_reject[] =
  "usage: estctl --db PATH reject (ID... | FILTER) --reason TEXT [--dry-run]\n"
  "\n"
  "Reject pending requests, by ID or every pending request a FILTER\n"
  "matches (as for approve). The device's retries get 4.03 with the reason.\n"
  "Each request is decided on its own; the exit status is non-zero if any\n"
  "failed or the filter matches nothing.\n"
  "  --dry-run   print what would be rejected and change nothing\n";

static const char help_preauth[] =
  "usage: estctl --db PATH preauth add (--subject DN [--idevid SHA256HEX] |\n"
  "                                     --idevid SHA256HEX) [--note TEXT]\n"
  "       estctl --db PATH preauth remove (--subject DN | --idevid SHA256HEX)\n"
  "       estctl --db PATH preauth list [--json]\n"
  "\n"
  "Pre-authorise a client before it asks: by the CSR subject DN, or by the\n"
  "SHA-256 fingerprint (64 hex digits) of its IDevID certificate, or by both\n"
  "(--subject with --idevid: both must match). The DN is parsed as RFC 4514\n"
  "(\"CN=dev-1, O=Acme\" and \"cn=dev-1,o=Acme\" are one DN; values are exact)\n"
  "and kept in canonical form; one that does not parse is refused.\n"
  "Its requests are then approved at once. Entries stay until removed.\n";

static const char help_certs[] =
  "usage: estctl --db PATH certs [--json]\n"
  "\n"
  "List issued certificates, oldest first.\n"
  "  --json   print a JSON array of certificate objects\n";

static const char help_revoke[] =
  "usage: estctl --db PATH revoke SERIAL --reason REASON\n"
  "\n"
  "Revoke a certificate by its serial number (hex). The client is refused\n"
  "from its next request on, a retry of its request is no longer answered\n"
  "with it, and coapd lists it in its next CRL (plugin_opt_crl_file).\n"
  "REASON is an RFC 5280 reason: unspecified, keyCompromise, cACompromise,\n"
  "affiliationChanged, superseded, cessationOfOperation, certificateHold,\n"
  "privilegeWithdrawn or aACompromise.\n";

static const char help_crl[] =
  "usage: estctl --db PATH crl --out FILE [--pem]\n"
  "\n"
  "Write the CRL coapd published last (plugin_opt_crl_file) to FILE, DER\n"
  "unless --pem; FILE is replaced in one step. Prints its CRL number.\n";

static const char help_audit[] =
  "usage: estctl --db PATH audit [--request ID] [--limit N] [--json]\n"
  "\n"
  "Show the audit trail, newest first: the newest 100 rows unless --limit\n"
  "says otherwise (at most 10000), optionally of one request only.\n"
  "  --json   print a JSON array of audit objects\n";

static const char help_raw[] =
  "usage: estctl --db PATH raw [JSON | -]\n"
  "\n"
  "Run a control envelope {\"commands\":[{\"command\":...}, ...]} exactly as\n"
  "the broker plugin runs one from $CONTROL/est-coaps/v1 (read from stdin\n"
  "when JSON is - or missing) and print the reply {\"responses\":[...]}.\n"
  "Exits 1 if any response carries an error.\n";

static const char help_events[] =
  "usage: estctl --db PATH events [--after ID] [--limit N]\n"
  "\n"
  "Print the events the broker plugin publishes for the audit rows after\n"
  "audit id ID (default 0), one per line: the topic, a space, the JSON\n"
  "payload. Audit rows that are not events are skipped.\n";

static int usage_error(const char *cmd, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

static int usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  fputs("estctl: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  if (cmd != NULL)
    fprintf(stderr, "\nTry 'estctl %s --help'.\n", cmd);
  else
    fputs("\nTry 'estctl --help'.\n", stderr);
  return EXIT_USAGE;
}

/* ------------------------------------------------------------ text */

/* Copy @p in for a terminal: control characters (C0, DEL, and C1 as UTF-8
 * U+0080..U+009F) become '?', so stored text cannot drive the terminal.
 * At most @p max characters (0: no limit), "..." when cut. Caller frees. */
static char *clean(const char *in, size_t max) {
  if (in == NULL)
    in = "-";
  size_t n = strlen(in), chars = 0, o = 0;
  char *out = malloc(n + 4);
  if (out == NULL) {
    fputs("estctl: out of memory\n", stderr);
    exit(EXIT_FAILED);
  }
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)in[i];
    bool lead = (ch & 0xc0) != 0x80;
    if (lead) {
      if (max != 0 && chars == max) {
        /* Cut: drop the last characters to make room for "...". */
        size_t back = 0;
        while (o > 0 && back < 3) {
          o--;
          if (((unsigned char)out[o] & 0xc0) != 0x80)
            back++;
        }
        memcpy(out + o, "...", 3);
        o += 3;
        break;
      }
      chars++;
    }
    if (ch < 0x20 || ch == 0x7f) {
      out[o++] = '?';
    } else if (ch == 0xc2 && i + 1 < n && (unsigned char)in[i + 1] >= 0x80 &&
               (unsigned char)in[i + 1] <= 0x9f) {
      out[o++] = '?';
      i++;
    } else {
      out[o++] = (char)ch;
    }
  }
  out[o] = '\0';
  return out;
}

/* Display width: UTF-8 characters, not bytes. */
static size_t text_width(const char *s) {
  size_t w = 0;
  for (; *s != '\0'; s++)
    w += ((unsigned char)*s & 0xc0) != 0x80;
  return w;
}

/* A simple aligned table: header row, then rows of cleaned cells. */
typedef struct table {
  size_t cols, rows, cap;
  char **cells; /* rows * cols, row 0 is the header */
} table;

static void table_init(table *t, size_t cols, const char *const *header) {
  memset(t, 0, sizeof *t);
  t->cols = cols;
  t->cap = 16;
  t->cells = calloc(t->cap * cols, sizeof *t->cells);
  if (t->cells == NULL) {
    fputs("estctl: out of memory\n", stderr);
    exit(EXIT_FAILED);
  }
  for (size_t c = 0; c < cols; c++)
    t->cells[c] = clean(header[c], 0);
  t->rows = 1;
}

/* Add a row of @p t->cols cells; each is cleaned, cut at max[c] (0: no cut). */
static void table_row(table *t, const char *const *cells, const size_t *max) {
  if (t->rows == t->cap) {
    char **p = realloc(t->cells, 2 * t->cap * t->cols * sizeof *p);
    if (p == NULL) {
      fputs("estctl: out of memory\n", stderr);
      exit(EXIT_FAILED);
    }
    t->cells = p;
    t->cap *= 2;
  }
  for (size_t c = 0; c < t->cols; c++)
    t->cells[t->rows * t->cols + c] =
      clean(cells[c], max != NULL ? max[c] : 0);
  t->rows++;
}

static void table_print(table *t) {
  size_t w[16] = {0};
  for (size_t r = 0; r < t->rows; r++)
    for (size_t c = 0; c < t->cols && c < 16; c++) {
      size_t n = text_width(t->cells[r * t->cols + c]);
      if (n > w[c])
        w[c] = n;
    }
  for (size_t r = 0; r < t->rows; r++) {
    for (size_t c = 0; c < t->cols; c++) {
      const char *cell = t->cells[r * t->cols + c];
      if (c + 1 == t->cols) {
        fputs(cell, stdout);
      } else {
        fputs(cell, stdout);
        for (size_t i = text_width(cell); i < w[c] + 2; i++)
          putchar(' ');
      }
    }
    putchar('\n');
  }
}

static void table_free(table *t) {
  for (size_t i = 0; i < t->rows * t->cols; i++)
    free(t->cells[i]);
  free(t->cells);
  memset(t, 0, sizeof *t);
}

/* A member of a response object as text: strings as they are, numbers in
 * decimal, null and missing as "-". Points into @p buf or the object. */
static const char *field(const cJSON *o, const char *name, char *buf,
                         size_t len) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  if (cJSON_IsString(v) && v->valuestring != NULL)
    return v->valuestring;
  if (cJSON_IsNumber(v)) {
    if (buf == NULL || len == 0)
      return "?";
    snprintf(buf, len, "%.0f", v->valuedouble);
    return buf;
  }
  if (cJSON_IsBool(v))
    return cJSON_IsTrue(v) ? "yes" : "no";
  return "-";
}

static void print_json(const cJSON *j) {
  char *text = cJSON_Print(j);
  if (text == NULL) {
    fputs("estctl: out of memory\n", stderr);
    exit(EXIT_FAILED);
  }
  puts(text);
  cJSON_free(text);
}

/* ------------------------------------------------------------ running */

static int exit_for(est_err rc) {
  switch (rc) {
  case EST_OK:
    return EXIT_OK;
  case EST_ERR_BUSY:
  case EST_ERR_IO:
  case EST_ERR_STORE:
  case EST_ERR_SCHEMA:
    return EXIT_DB;
  default:
    return EXIT_FAILED;
  }
}

static int worse(int a, int b) {
  /* 3 (database) over 1 (failed) over 0. */
  if (a == EXIT_DB || b == EXIT_DB)
    return EXIT_DB;
  return a > b ? a : b;
}

static int db_open(app *a, bool read_only) {
  store_options o;
  char diag[512];
  if (a->db_path == NULL) /* only reachable with a stray -h as a value */
    return usage_error(NULL, "--db PATH is required");
  store_options_init(&o);
  o.busy_timeout_ms = a->busy_ms;
  o.create = false;
  o.read_only = read_only;
  est_err rc = store_open(a->db_path, &o, &a->s, diag, sizeof diag);
  if (rc != EST_OK) {
    if (rc == EST_ERR_BUSY)
      fprintf(stderr, "estctl: database is busy (%s)\n", diag);
    else
      fprintf(stderr, "estctl: %s\n", diag[0] ? diag : est_strerror(rc));
    return EXIT_DB;
  }
  a->read_only = read_only;
  return EXIT_OK;
}

/* A command object {"command": name}; exits when out of memory. */
static cJSON *cmd_new(const char *name) {
  cJSON *c = cJSON_CreateObject();
  if (c == NULL || cJSON_AddStringToObject(c, "command", name) == NULL) {
    fputs("estctl: out of memory\n", stderr);
    exit(EXIT_FAILED);
  }
  return c;
}

static void cmd_str(cJSON *c, const char *name, const char *v) {
  if (v != NULL && cJSON_AddStringToObject(c, name, v) == NULL) {
    fputs("estctl: out of memory\n", stderr);
    exit(EXIT_FAILED);
  }
}

static void cmd_num(cJSON *c, const char *name, int64_t v) {
  if (cJSON_AddNumberToObject(c, name, (double)v) == NULL) {
    fputs("estctl: out of memory\n", stderr);
    exit(EXIT_FAILED);
  }
}

/* Run @p cmd (consumed) through ctl_run(). On success *data gets the
 * response's data object (free *resp afterwards); on failure the error is
 * printed and the exit status returned. */
static int run_ctx(app *a, cJSON *cmd, cJSON **resp, const cJSON **data,
                   const char *what) {
  ctl_ctx c = {.s = a->s, .actor = a->actor, .may_write = !a->read_only};
  est_err rc = EST_OK;
  cJSON *r = ctl_run(&c, cmd, &rc);
  cJSON_Delete(cmd);
  *resp = r;
  *data = NULL;
  if (r == NULL) {
    fputs("estctl: out of memory\n", stderr);
    return EXIT_FAILED;
  }
  const cJSON *err = cJSON_GetObjectItemCaseSensitive(r, "error");
  if (err != NULL) {
    char *msg = clean(cJSON_IsString(err) ? err->valuestring : "failed", 0);
    int ex = exit_for(rc != EST_OK ? rc : EST_ERR_INVALID);
    /* "database is busy" does not say which of several IDs it was. */
    if (what != NULL && ex == EXIT_DB)
      fprintf(stderr, "estctl: %s: %s\n", what, msg);
    else
      fprintf(stderr, "estctl: %s\n", msg);
    free(msg);
    return ex;
  }
  *data = cJSON_GetObjectItemCaseSensitive(r, "data");
  return EXIT_OK;
}

static int run(app *a, cJSON *cmd, cJSON **resp, const cJSON **data) {
  return run_ctx(a, cmd, resp, data, NULL);
}

/* Strict decimal: 1..2^53-1 (0 too with @p zero_ok). */
static bool parse_id(const char *s, bool zero_ok, int64_t *out) {
  char *end;
  if (s == NULL || *s < '0' || *s > '9')
    return false;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno != 0 || *end != '\0' || v > ID_MAX || (v == 0 && !zero_ok))
    return false;
  *out = v;
  return true;
}

/* Per-command option parsing: argv[0] is the command name. */
#define OPT_HELP 'h'
#define OPT_JSON 1000
#define OPT_STATE 1001
#define OPT_REASON 1002
#define OPT_SUBJECT 1003
#define OPT_IDEVID 1004
#define OPT_NOTE 1005
#define OPT_REQUEST 1006
#define OPT_LIMIT 1007
#define OPT_AFTER 1008
#define OPT_OUT 1009
#define OPT_PEM 1010
#define OPT_SAN 1011
#define OPT_CLIENT 1012
#define OPT_OLDER 1013
#define OPT_NEWER 1014
#define OPT_DRY_RUN 1015
#define OPT_GROUP 1016
#define OPT_BEFORE 1017

static const struct option cmd_opts[] = {
  {"help", no_argument, NULL, OPT_HELP},
  {"json", no_argument, NULL, OPT_JSON},
  {"state", required_argument, NULL, OPT_STATE},
  {"reason", required_argument, NULL, OPT_REASON},
  {"subject", required_argument, NULL, OPT_SUBJECT},
  {"idevid", required_argument, NULL, OPT_IDEVID},
  {"note", required_argument, NULL, OPT_NOTE},
  {"request", required_argument, NULL, OPT_REQUEST},
  {"limit", required_argument, NULL, OPT_LIMIT},
  {"after", required_argument, NULL, OPT_AFTER},
  {"out", required_argument, NULL, OPT_OUT},
  {"pem", no_argument, NULL, OPT_PEM},
  {"san", required_argument, NULL, OPT_SAN},
  {"client", required_argument, NULL, OPT_CLIENT},
  {"older-than", required_argument, NULL, OPT_OLDER},
  {"newer-than", required_argument, NULL, OPT_NEWER},
  {"dry-run", no_argument, NULL, OPT_DRY_RUN},
  {"group", required_argument, NULL, OPT_GROUP},
  {"before", required_argument, NULL, OPT_BEFORE},
  {NULL, 0, NULL, 0},
};

typedef struct args {
  bool help, json, pem, dry_run;
  const char *state, *reason, *subject, *idevid, *note, *request, *limit,
    *after, *out, *san, *client, *older, *newer, *group, *before;
  int nargs;
  char **pos; /* positional arguments */
} args;

/* Parse the options of command @p name, allowing only those in @p allowed
 * (a string of OPT_ letters: j s r S I n q l a o p A C O W D g b). */
static int parse_args(const char *name, const char *allowed, int argc,
                      char **argv, args *out) {
  int ch;
  memset(out, 0, sizeof *out);
  optind = 0; /* glibc: full re-initialisation */
  opterr = 0;
  while ((ch = getopt_long(argc, argv, ":h", cmd_opts, NULL)) != -1) {
    char key = 0;
    switch (ch) {
    case OPT_HELP:
      out->help = true;
      continue;
    case OPT_JSON:
      key = 'j';
      out->json = true;
      break;
    case OPT_STATE:
      key = 's';
      out->state = optarg;
      break;
    case OPT_REASON:
      key = 'r';
      out->reason = optarg;
      break;
    case OPT_SUBJECT:
      key = 'S';
      out->subject = optarg;
      break;
    case OPT_IDEVID:
      key = 'I';
      out->idevid = optarg;
      break;
    case OPT_NOTE:
      key = 'n';
      out->note = optarg;
      break;
    case OPT_REQUEST:
      key = 'q';
      out->request = optarg;
      break;
    case OPT_LIMIT:
      key = 'l';
      out->limit = optarg;
      break;
    case OPT_AFTER:
      key = 'a';
      out->after = optarg;
      break;
    case OPT_OUT:
      key = 'o';
      out->out = optarg;
      break;
    case OPT_PEM:
      key = 'p';
      out->pem = true;
      break;
    case OPT_SAN:
      key = 'A';
      out->san = optarg;
      break;
    case OPT_CLIENT:
      key = 'C';
      out->client = optarg;
      break;
    case OPT_OLDER:
      key = 'O';
      out->older = optarg;
      break;
    case OPT_NEWER:
      key = 'W';
      out->newer = optarg;
      break;
    case OPT_DRY_RUN:
      key = 'D';
      out->dry_run = true;
      break;
    case OPT_GROUP:
      key = 'g';
      out->group = optarg;
      break;
    case OPT_BEFORE:
      key = 'b';
      out->before = optarg;
      break;
    case ':':
      return usage_error(name, "option '%s' needs a value", argv[optind - 1]);
    default:
      return usage_error(name, "unknown option '%s'", argv[optind - 1]);
    }
    if (strchr(allowed, key) == NULL)
      return usage_error(name, "option '%s' does not apply to %s",
                         argv[optind - 1], name);
  }
  out->nargs = argc - optind;
  out->pos = argv + optind;
  return EXIT_OK;
}

/* ------------------------------------------------------------ commands */

/* Longest text of a SAN list cell. */
#define SANS_TEXT 1024

/* "dns:a.example, ip:10.0.0.1", "none", or "-" (the CSR did not parse). */
static const char *sans_text(const cJSON *r, char *buf, size_t len) {
  const cJSON *sans = cJSON_GetObjectItemCaseSensitive(r, "sans"), *it;
  size_t n = 0;
  if (!cJSON_IsArray(sans))
    return "-";
  if (cJSON_GetArraySize(sans) == 0)
    return "none";
  buf[0] = '\0';
  cJSON_ArrayForEach(it, sans) {
    int w = snprintf(buf + n, len - n, "%s%s:%s", n ? ", " : "",
                     field(it, "type", NULL, 0), field(it, "value", NULL, 0));
    if (w < 0 || (size_t)w >= len - n)
      break; /* cut: the table cuts anyway, show prints the JSON */
    n += (size_t)w;
  }
  return buf;
}

/* "ec secp256r1", "rsa 2048", "ed25519", or "-". */
static const char *key_text(const cJSON *r, char *buf, size_t len) {
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(r, "keyType");
  const cJSON *curve = cJSON_GetObjectItemCaseSensitive(r, "keyCurve");
  const cJSON *bits = cJSON_GetObjectItemCaseSensitive(r, "keyBits");
  if (!cJSON_IsString(type))
    return "-";
  if (cJSON_IsString(curve))
    snprintf(buf, len, "%s %s", type->valuestring, curve->valuestring);
  else if (cJSON_IsNumber(bits) && strncmp(type->valuestring, "ed", 2) != 0)
    snprintf(buf, len, "%s %.0f", type->valuestring, bits->valuedouble);
  else
    snprintf(buf, len, "%s", type->valuestring);
  return buf;
}

static void request_row(table *t, const cJSON *r) {
  /* The fingerprint is cut to a prefix that --client takes. */
  static const size_t max[] = {0, 0, 0, CELL_MAX, CELL_MAX, 0, CELL_MAX, 0, 19, 0};
  char id[32], sans[SANS_TEXT], key[64];
  const char *cells[] = {
    field(r, "id", id, sizeof id),    field(r, "state", NULL, 0),
    field(r, "function", NULL, 0),    field(r, "subject", NULL, 0),
    sans_text(r, sans, sizeof sans),  key_text(r, key, sizeof key),
    field(r, "client", NULL, 0),      field(r, "clientSerial", NULL, 0),
    field(r, "clientFingerprint", NULL, 0), field(r, "created", NULL, 0),
  };
  table_row(t, cells, max);
}

/* Parse AGE: N with an optional unit s, m, h, d or w, into seconds (at most
 * 100 years). */
static bool parse_age(const char *s, int64_t *out) {
  static const struct { char unit; int64_t secs; } units[] = {
    {'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}, {'w', 604800}};
  const int64_t cap = 3155760000LL;
  char *end;
  if (s == NULL || *s < '0' || *s > '9')
    return false;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  int64_t mul = 1;
  if (errno != 0 || v < 0 || v > cap)
    return false;
  if (*end != '\0') {
    mul = 0;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
      if (end[0] == units[i].unit && end[1] == '\0')
        mul = units[i].secs;
    if (mul == 0)
      return false;
  }
  if (v > cap / mul)
    return false;
  *out = (int64_t)v * mul;
  return true;
}

static bool has_filter(const args *o) {
  return o->subject != NULL || o->san != NULL || o->client != NULL || o->older != NULL ||
         o->newer != NULL;
}

/* The filter options as listRequests members; a usage error for a bad AGE. */
static int add_filter(const char *name, const args *o, cJSON *cmd) {
  int64_t secs;
  const char *ages[2][2] = {{o->older, "olderThan"}, {o->newer, "newerThan"}};
  cmd_str(cmd, "subject", o->subject);
  cmd_str(cmd, "san", o->san);
  cmd_str(cmd, "client", o->client);
  for (int i = 0; i < 2; i++) {
    if (ages[i][0] == NULL)
      continue;
    if (!parse_age(ages[i][0], &secs))
      return usage_error(name, "bad age '%s' (N[s|m|h|d|w], e.g. 2h or 7d)", ages[i][0]);
    cmd_num(cmd, ages[i][1], secs);
  }
  return EXIT_OK;
}

static int do_list(app *a, int argc, char **argv) {
  static const char *const head[] = {
    "ID",     "STATE",         "FUNCTION",  "SUBJECT",   "SANS",
    "KEY",    "CLIENT",        "CLIENT-SERIAL", "CLIENT-FP", "CREATED"};
  args o;
  int rc = parse_args("list", "jsSACOW", argc, argv, &o);
  store_req_state st;
  if (rc != EXIT_OK)
    return rc;
  if (o.help)
    return fputs(help_list, stdout), EXIT_OK;
  if (o.nargs != 0)
    return usage_error("list", "unexpected argument '%s'", o.pos[0]);
  if (o.state != NULL && store_state_parse(o.state, &st) != EST_OK)
    return usage_error("list",
                       "unknown state '%s' (pending, approved, rejected, "
                       "issued, expired)",
                       o.state);
  cJSON *cmd = cmd_new("listRequests"), *resp;
  const cJSON *data;
  cmd_str(cmd, "state", o.state);
  if ((rc = add_filter("list", &o, cmd)) != EXIT_OK ||
      (rc = db_open(a, true)) != EXIT_OK) {
    cJSON_Delete(cmd);
    return rc;
  }
  if ((rc = run(a, cmd, &resp, &data)) == EXIT_OK) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(data, "requests");
    if (o.json) {
      print_json(list);
    } else if (cJSON_GetArraySize(list) == 0) {
      puts(has_filter(&o) ? "no requests match the filter"
           : o.state != NULL ? "no requests in that state" : "no requests");
    } else {
      table t;
      const cJSON *r;
      table_init(&t, 10, head);
      cJSON_ArrayForEach(r, list) request_row(&t, r);
      table_print(&t);
      table_free(&t);
    }
  }
  cJSON_Delete(resp);
  return rc;
}

static void audit_table(const cJSON *list, bool with_request) {
  static const char *const head_all[] = {"ID",     "TIME",    "ACTOR", "ACTION",
                                         "SERIAL", "REQUEST", "DETAIL"};
  static const char *const head_one[] = {"ID",     "TIME",  "ACTOR",
                                         "ACTION", "SERIAL", "DETAIL"};
  const cJSON *r;
  table t;
  table_init(&t, with_request ? 7 : 6, with_request ? head_all : head_one);
  cJSON_ArrayForEach(r, list) {
    char id[32], req[32];
    const char *cells[7] = {
      field(r, "id", id, sizeof id),  field(r, "time", NULL, 0),
      field(r, "actor", NULL, 0),     field(r, "action", NULL, 0),
      field(r, "serial", NULL, 0),    field(r, "requestId", req, sizeof req),
      field(r, "detail", NULL, 0),
    };
    if (!with_request)
      cells[5] = cells[6];
    table_row(&t, cells, NULL);
  }
  table_print(&t);
  table_free(&t);
}

static int do_show(app *a, int argc, char **argv) {
  args o;
  int64_t id;
  int rc = parse_args("show", "j", argc, argv, &o);
  if (rc != EXIT_OK)
    return rc;
  if (o.help)
    return fputs(help_show, stdout), EXIT_OK;
  if (o.nargs != 1)
    return usage_error("show", "show needs exactly one request ID");
  if (!parse_id(o.pos[0], false, &id))
    return usage_error("show", "bad request ID '%s'", o.pos[0]);
  if ((rc = db_open(a, true)) != EXIT_OK)
    return rc;
  cJSON *cmd = cmd_new("getRequest"), *resp;
  const cJSON *data;
  cmd_num(cmd, "id", id);
  if ((rc = run(a, cmd, &resp, &data)) == EXIT_OK) {
    cJSON *req = cJSON_GetObjectItemCaseSensitive(data, "request");
    cJSON *trail = cJSON_GetObjectItemCaseSensitive(data, "audit");
    if (o.json) {
      /* The request object with its trail as an "audit" member. */
      cJSON *copy = cJSON_Duplicate(req, true), *tc = cJSON_Duplicate(trail, true);
      if (copy == NULL || tc == NULL || !cJSON_AddItemToObject(copy, "audit", tc)) {
        cJSON_Delete(copy);
        cJSON_Delete(tc);
        cJSON_Delete(resp);
        fputs("estctl: out of memory\n", stderr);
        return EXIT_FAILED;
      }
      print_json(copy);
      cJSON_Delete(copy);
    } else {
      static const char *const names[][2] = {
        {"state", "state"},         {"function", "function"},
        {"subject", "subject"},     {"sans", "sans"},
        {"keyType", "key"},         {"client", "client"},
        {"clientClass", "class"},   {"clientSerial", "client serial"},
        {"clientFingerprint", "client sha256"}, {"ra", "via RA"},
        {"created", "created"},
        {"updated", "updated"},     {"expires", "expires"},
        {"reason", "reason"},       {"certSerial", "certificate"},
      };
      char num[32], sans[SANS_TEXT], key[64];
      printf("request %s\n", field(req, "id", num, sizeof num));
      for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = field(req, names[i][0], NULL, 0);
        if (strcmp(names[i][0], "expires") == 0 && strcmp(v, "-") == 0)
          v = "never";
        if (strcmp(names[i][0], "sans") == 0)
          v = sans_text(req, sans, sizeof sans);
        if (strcmp(names[i][0], "keyType") == 0)
          v = key_text(req, key, sizeof key);
        char *cv = clean(v, 0);
        printf("  %-14s %s\n", names[i][1], cv);
        free(cv);
      }
      printf("audit trail:\n");
      audit_table(trail, false);
    }
  }
  cJSON_Delete(resp);
  return rc;
}

/* One line about request object @p r for a decision or a dry run. */
static void decision_line(const cJSON *r, const char *verb) {
  char id[32], sans[SANS_TEXT], key[64];
  char *subject = clean(field(r, "subject", NULL, 0), CELL_MAX);
  char *client = clean(field(r, "client", NULL, 0), CELL_MAX);
  char *sv = clean(sans_text(r, sans, sizeof sans), CELL_MAX);
  char *kv = clean(key_text(r, key, sizeof key), 0);
  printf("%s request %s: subject %s, sans %s, key %s, client %s\n", verb,
         field(r, "id", id, sizeof id), subject, sv, kv, client);
  free(subject);
  free(client);
  free(sv);
  free(kv);
}

/* The ids of the pending requests @p o's filter matches, as a JSON array
 * of request objects in *list (free *resp). */
static int filter_pending(app *a, const char *name, const args *o, cJSON **resp,
                          const cJSON **list) {
  cJSON *cmd = cmd_new("listRequests");
  const cJSON *data;
  int rc;
  *resp = NULL;
  *list = NULL;
  cmd_str(cmd, "state", "pending");
  if ((rc = add_filter(name, o, cmd)) != EXIT_OK) {
    cJSON_Delete(cmd);
    return rc;
  }
  if ((rc = run(a, cmd, resp, &data)) != EXIT_OK)
    return rc;
  *list = cJSON_GetObjectItemCaseSensitive(data, "requests");
  return EXIT_OK;
}

static int decide_many(app *a, int argc, char **argv, bool approve) {
  const char *name = approve ? "approve" : "reject";
  const char *done = approve ? "approved" : "rejected";
  args o;
  int rc = parse_args(name, "rSACOWD", argc, argv, &o), worst = EXIT_OK;
  cJSON *found = NULL;
  const cJSON *list = NULL;
  int64_t *ids = NULL;
  int n = 0;
  if (rc != EXIT_OK)
    return rc;
  if (o.help)
    return fputs(approve ? help_approve : help_reject, stdout), EXIT_OK;
  bool filter = has_filter(&o);
  if (o.nargs == 0 && !filter)
    return usage_error(name, "%s needs request IDs or a filter (--subject, --san, "
                             "--client, --older-than, --newer-than)", name);
  if (o.nargs != 0 && filter)
    return usage_error(name, "give request IDs or a filter, not both");
  if (!approve && (o.reason == NULL || o.reason[0] == '\0'))
    return usage_error(name, "reject needs --reason TEXT");
  if (!filter) {
    if ((ids = calloc((size_t)o.nargs, sizeof *ids)) == NULL)
      return fputs("estctl: out of memory\n", stderr), EXIT_FAILED;
    for (int i = 0; i < o.nargs; i++)
      if (!parse_id(o.pos[i], false, &ids[i])) {
        free(ids);
        return usage_error(name, "bad request ID '%s'", o.pos[i]);
      }
    n = o.nargs;
  } else {
    /* Check the ages before opening anything. */
    cJSON *probe = cmd_new("listRequests");
    rc = add_filter(name, &o, probe);
    cJSON_Delete(probe);
    if (rc != EXIT_OK)
      return rc;
  }
  /* A dry run only reads. */
  if ((rc = db_open(a, o.dry_run)) != EXIT_OK) {
    free(ids);
    return rc;
  }
  if (filter) {
    if ((rc = filter_pending(a, name, &o, &found, &list)) != EXIT_OK) {
      cJSON_Delete(found);
      return rc;
    }
    n = cJSON_GetArraySize(list);
    if (n == 0) {
      fprintf(stderr, "estctl: no pending request matches the filter; nothing %s\n", done);
      cJSON_Delete(found);
      return EXIT_FAILED;
    }
    if ((ids = calloc((size_t)n, sizeof *ids)) == NULL) {
      cJSON_Delete(found);
      return fputs("estctl: out of memory\n", stderr), EXIT_FAILED;
    }
    int i = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, list) {
      const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, "id");
      ids[i++] = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
    }
  }
  /* Each request on its own: one transaction and audit row each. */
  for (int i = 0; i < n; i++) {
    cJSON *cmd, *resp;
    const cJSON *data;
    char what[48];
    snprintf(what, sizeof what, "request %" PRId64, ids[i]);
    if (o.dry_run) {
      cmd = cmd_new("getRequest");
      cmd_num(cmd, "id", ids[i]);
      rc = run_ctx(a, cmd, &resp, &data, what);
      const cJSON *r = cJSON_GetObjectItemCaseSensitive(data, "request");
      const cJSON *st = cJSON_GetObjectItemCaseSensitive(r, "state");
      if (rc == EXIT_OK && !(cJSON_IsString(st) && strcmp(st->valuestring, "pending") == 0)) {
        fprintf(stderr, "estctl: request %" PRId64 " is %s, not pending\n", ids[i],
                cJSON_IsString(st) ? st->valuestring : "?");
        rc = EXIT_FAILED;
      }
      if (rc == EXIT_OK)
        decision_line(r, approve ? "would approve" : "would reject");
    } else {
      cmd = cmd_new(approve ? "approveRequest" : "rejectRequest");
      cmd_num(cmd, "id", ids[i]);
      cmd_str(cmd, "reason", o.reason);
      rc = run_ctx(a, cmd, &resp, &data, what);
      if (rc == EXIT_OK && filter)
        decision_line(cJSON_GetObjectItemCaseSensitive(data, "request"), done);
      else if (rc == EXIT_OK)
        printf("request %" PRId64 " %s\n", ids[i], done);
    }
    cJSON_Delete(resp);
    worst = worse(worst, rc);
  }
  if (o.dry_run)
    printf("dry run: nothing %s\n", done);
  cJSON_Delete(found);
  free(ids);
  return worst;
}

static int do_approve(app *a, int argc, char **argv) {
  return decide_many(a, argc, argv, true);
}

static int do_reject(app *a, int argc, char **argv) {
  return decide_many(a, argc, argv, false);
}

static int preauth_list(app *a, const args *o) {
  static const char *const head[] = {"ID",   "KIND",    "VALUE", "IDEVID",
                                     "NOTE", "CREATED", "ACTOR"};
  static const size_t max[] = {0, 0, 0, 0, CELL_MAX, 0, 0};
  int rc = db_open(a, true);
  if (rc != EXIT_OK)
    return rc;
  cJSON *resp;
  const cJSON *data;
  if ((rc = run(a, cmd_new("listPreauth"), &resp, &data)) == EXIT_OK) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(data, "preauth");
    if (o->json) {
      print_json(list);
    } else if (cJSON_GetArraySize(list) == 0) {
      puts("no pre-authorisations");
    } else {
      const cJSON *p;
      table t;
      table_init(&t, 7, head);
      cJSON_ArrayForEach(p, list) {
        char id[32];
        const char *cells[] = {
          field(p, "id", id, sizeof id), field(p, "kind", NULL, 0),
          field(p, "value", NULL, 0),    field(p, "idevid", NULL, 0),
          field(p, "note", NULL, 0),
          field(p, "created", NULL, 0),  field(p, "actor", NULL, 0),
        };
        table_row(&t, cells, max);
      }
      table_print(&t);
      table_free(&t);
    }
  }
  cJSON_Delete(resp);
  return rc;
}

static int do_preauth(app *a, int argc, char **argv) {
  const char *sub = argc > 1 ? argv[1] : NULL;
  args o;
  int rc;
  if (sub == NULL || strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0) {
    if (sub == NULL)
      return usage_error("preauth", "preauth needs add, remove or list");
    return fputs(help_preauth, stdout), EXIT_OK;
  }
  bool add = strcmp(sub, "add") == 0, remove = strcmp(sub, "remove") == 0;
  if (!add && !remove && strcmp(sub, "list") != 0)
    return usage_error("preauth", "unknown preauth command '%s'", sub);
  if ((rc = parse_args("preauth", add ? "SIn" : remove ? "SI" : "j", argc - 1,
                       argv + 1, &o)) != EXIT_OK)
    return rc;
  if (o.help)
    return fputs(help_preauth, stdout), EXIT_OK;
  if (o.nargs != 0)
    return usage_error("preauth", "unexpected argument '%s'", o.pos[0]);
  if (!add && !remove)
    return preauth_list(a, &o);
  /* add --subject DN --idevid FP: bound to that IDevID, both must match. */
  bool bound = add && o.subject != NULL && o.idevid != NULL;
  if (!bound && (o.subject == NULL) == (o.idevid == NULL))
    return usage_error("preauth", add ? "give --subject DN, --idevid SHA256HEX, or both"
                                      : "give exactly one of --subject DN and "
                                        "--idevid SHA256HEX");
  if ((rc = db_open(a, false)) != EXIT_OK)
    return rc;
  const char *kind = o.subject != NULL ? "subject" : "idevid";
  const char *value = o.subject != NULL ? o.subject : o.idevid;
  cJSON *cmd = cmd_new(add ? "addPreauth" : "removePreauth"), *resp;
  const cJSON *data;
  cmd_str(cmd, "kind", kind);
  cmd_str(cmd, "value", value);
  if (bound)
    cmd_str(cmd, "idevid", o.idevid);
  if (add)
    cmd_str(cmd, "note", o.note);
  if ((rc = run(a, cmd, &resp, &data)) == EXIT_OK) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(data, "preauth");
    /* Added: the value as stored (an IDevID fingerprint in lowercase). */
    char *cv = clean(add ? field(p, "value", NULL, 0) : value, 0);
    if (add) {
      char id[32];
      char *bv = clean(field(p, "idevid", NULL, 0), 0);
      printf("pre-authorised %s %s%s%s%s%s (id %s)\n", kind,
             o.subject != NULL ? "'" : "", cv, o.subject != NULL ? "'" : "",
             bound ? " bound to idevid " : "", bound ? bv : "",
             field(p, "id", id, sizeof id));
      free(bv);
    } else {
      printf("removed the pre-authorisation of %s %s%s%s\n", kind,
             o.subject != NULL ? "'" : "", cv, o.subject != NULL ? "'" : "");
    }
    free(cv);
  }
  cJSON_Delete(resp);
  return rc;
}

static int do_certs(app *a, int argc, char **argv) {
  static const char *const head[] = {"SERIAL",    "SUBJECT", "NOT AFTER",
                                     "REQUEST",   "REVOKED", "CREATED"};
  static const size_t max[] = {0, CELL_MAX, 0, 0, 0, 0};
  args o;
  int rc = parse_args("certs", "j", argc, argv, &o);
  if (rc != EXIT_OK)
    return rc;
  if (o.help)
    return fputs(help_certs, stdout), EXIT_OK;
  if (o.nargs != 0)
    return usage_error("certs", "unexpected argument '%s'", o.pos[0]);
  if ((rc = db_open(a, true)) != EXIT_OK)
    return rc;
  cJSON *resp;
  const cJSON *data;
  if ((rc = run(a, cmd_new("listCertificates"), &resp, &data)) == EXIT_OK) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(data, "certificates");
    if (o.json) {
      print_json(list);
    } else if (cJSON_GetArraySize(list) == 0) {
      puts("no certificates");
    } else {
      const cJSON *c;
      table t;
      table_init(&t, 6, head);
      cJSON_ArrayForEach(c, list) {
        char req[32];
        const cJSON *rv = cJSON_GetObjectItemCaseSensitive(c, "revokedAt");
        const char *cells[] = {
          field(c, "serial", NULL, 0),
          field(c, "subject", NULL, 0),
          field(c, "notAfter", NULL, 0),
          field(c, "requestId", req, sizeof req),
          cJSON_IsString(rv) ? rv->valuestring : "no",
          field(c, "created", NULL, 0),
        };
        table_row(&t, cells, max);
      }
      table_print(&t);
      table_free(&t);
    }
  }
  cJSON_Delete(resp);
  return rc;
}

static int do_revoke(app *a, int argc, char **argv) {
  args o;
  int rc = parse_args("revoke", "r", argc, argv, &o);
  if (rc != EXIT_OK)
    return rc;
  if (o.help)
    return fputs(help_revoke, stdout), EXIT_OK;
  if (o.nargs != 1)
    return usage_error("revoke", "revoke needs exactly one SERIAL");
  if (o.reason == NULL || o.reason[0] == '\0')
    return usage_error("revoke", "revoke needs --reason REASON");
  if ((rc = db_open(a, false)) != EXIT_OK)
    return rc;
  cJSON *cmd = cmd_new("revokeCertificate"), *resp;
  const cJSON *data;
  cmd_str(cmd, "serial", o.pos[0]);
  cmd_str(cmd, "reason", o.reason);
  if ((rc = run(a, cmd, &resp, &data)) == EXIT_OK) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(data, "certificate");
    char *cv = clean(field(c, "serial", NULL, 0), 0);
    printf("certificate %s revoked\n", cv);
    free(cv);
  }
  cJSON_Delete(resp);
  return rc;
}

/* @p len bytes to @p path, replacing it in one step (write, fsync, rename). */
static int write_file(const char *path, const void *data, size_t len) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
    fprintf(stderr, "estctl: crl: path too long\n");
    return EXIT_FAILED;
  }
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  bool ok = fd >= 0;
  for (size_t off = 0; ok && off < len;) {
    ssize_t w = write(fd, (const char *)data + off, len - off);
    if (w < 0 && errno == EINTR)
      continue;
    ok = w > 0;
    if (ok)
      off += (size_t)w;
  }
  ok = ok && fsync(fd) == 0;
  if (fd >= 0 && close(fd) != 0)
    ok = false;
  ok = ok && rename(tmp, path) == 0;
  if (!ok) {
    fprintf(stderr, "estctl: crl: cannot write '%s': %s\n", path, strerror(errno));
    if (fd >= 0)
      (void)unlink(tmp);
    return EXIT_FAILED;
  }
  return EXIT_OK;
}

static const char help_backup[] =
  "usage: estctl --db PATH backup FILE\n"
  "\n"
  "A consistent copy of the database in FILE (mode 0600), taken while coapd\n"
  "keeps running (SQLite's online backup); FILE must not exist. Restore by\n"
  "stopping coapd and putting FILE in place of the database.\n";

static const char help_init[] =
  "usage: estctl --db PATH init [--group NAME]\n"
  "\n"
  "Create an empty database at PATH (it must not exist), mode 0600, or 0640\n"
  "in group NAME for a broker plugin that runs as another user.\n";

static const char help_prune[] =
  "usage: estctl --db PATH prune (--before DATE | --older-than AGE) [--dry-run]\n"
  "\n"
  "Remove requests rejected or expired before DATE and audit rows older\n"
  "than it; certificates, issued requests and pre-authorisations stay. DATE\n"
  "is YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC); AGE is N[s|m|h|d|w]. Prints\n"
  "the counts; --dry-run changes nothing. The prune itself is audited.\n";

/* YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC, into unix seconds. */
static bool parse_date(const char *v, int64_t *out) {
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  const char *end = strptime(v, "%Y-%m-%d", &tm);
  if (end && *end == 'T')
    end = strptime(end, "T%H:%M:%SZ", &tm);
  if (!end || *end != '\0' || tm.tm_year < 70)
    return false;
  time_t t = timegm(&tm);
  if (t <= 0)
    return false;
  *out = (int64_t)t;
  return true;
}

static int do_prune(app *a, int argc, char **argv) {
  args o;
  int64_t before = 0, age = 0;
  size_t nreq = 0, naudit = 0;
  int rc = parse_args("prune", "bOD", argc, argv, &o);
  if (rc != EXIT_OK)
    return rc;
  if (o.help)
    return fputs(help_prune, stdout), EXIT_OK;
  if (o.nargs != 0)
    return usage_error("prune", "unexpected argument '%s'", o.pos[0]);
  if ((o.before == NULL) == (o.older == NULL))
    return usage_error("prune", "prune needs --before DATE or --older-than AGE (one of them)");
  if (o.before && !parse_date(o.before, &before))
    return usage_error("prune", "bad date '%s' (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ)", o.before);
  if (o.older) {
    if (!parse_age(o.older, &age))
      return usage_error("prune", "bad age '%s' (N[s|m|h|d|w], e.g. 90d)", o.older);
    before = (int64_t)time(NULL) - age;
  }
  if ((rc = db_open(a, o.dry_run)) != EXIT_OK)
    return rc;
  est_err e = store_prune(a->s, before, o.dry_run, a->actor, &nreq, &naudit);
  if (e != EST_OK) {
    fprintf(stderr, "estctl: prune: %s\n", store_errmsg(a->s));
    return exit_for(e);
  }
  printf("%s %zu decided requests and %zu audit rows from before %lld\n",
         o.dry_run ? "would remove" : "removed", nreq, naudit, (long long)before);
  return EXIT_OK;
}

static int do_backup(app *a, int argc, char **argv) {
  args o;
  int pages = 0;
  int rc = parse_args("backup", "", argc, argv, &o);
  if (rc != EXIT_OK)
    return rc;
  if (o.help)
    return fputs(help_backup, stdout), EXIT_OK;
  if (o.nargs != 1)
    return usage_error("backup", "backup needs exactly one FILE");
  if ((rc = db_open(a, true)) != EXIT_OK)
    return rc;
  est_err e = store_backup(a->s, o.pos[0], &pages);
  if (e != EST_OK) {
    fprintf(stderr, "estctl: backup: %s\n", store_errmsg(a->s));
    return e == EST_ERR_EXISTS ? EXIT_FAILED : exit_for(e);
  }
  printf("backup of %s written to %s (%d pages)\n", a->db_path, o.pos[0], pages);
  return EXIT_OK;
}

static int do_init(app *a, int argc, char **argv) {
  args o;
  char diag[512];
  store_options so;
  int rc = parse_args("init", "g", argc, argv, &o);
  if (rc != EXIT_OK)
    return rc;
  if (o.help)
    return fputs(help_init, stdout), EXIT_OK;
  if (o.nargs != 0)
    return usage_error("init", "unexpected argument '%s'", o.pos[0]);
  if (access(a->db_path, F_OK) == 0) {
    fprintf(stderr, "estctl: init: %s exists; nothing done\n", a->db_path);
    return EXIT_FAILED;
  }
  store_options_init(&so);
  so.create = true;
  so.busy_timeout_ms = a->busy_ms;
  if (o.group) {
    struct group gr, *res = NULL;
    char buf[4096];
    if (getgrnam_r(o.group, &gr, buf, sizeof buf, &res) != 0 || res == NULL)
      return usage_error("init", "no group '%s'", o.group);
    so.use_group = true;
    so.group_gid = (unsigned)gr.gr_gid;
  }
  est_err e = store_open(a->db_path, &so, &a->s, diag, sizeof diag);
  if (e != EST_OK) {
    fprintf(stderr, "estctl: init: %s\n", diag[0] ? diag : est_strerror(e));
    return exit_for(e);
  }
  printf("created %s (schema %d, mode %s)\n", a->db_path, store_schema_version(),
         o.group ? "0640" : "0600");
  return EXIT_OK;
}

static int do_crl(app *a, int argc, char **argv) {
  args o;
  int rc = parse_args("crl", "op", argc, argv, &o);
  if (rc != EXIT_OK)
    return rc;
  if (o.help)
    return fputs(help_crl, stdout), EXIT_OK;
  if (o.nargs != 0)
    return usage_error("crl", "unexpected argument '%s'", o.pos[0]);
  if (o.out == NULL || o.out[0] == '\0')
    return usage_error("crl", "crl needs --out FILE");
  if ((rc = db_open(a, true)) != EXIT_OK)
    return rc;
  cJSON *cmd = cmd_new("getCrl"), *resp;
  const cJSON *data;
  if ((rc = run(a, cmd, &resp, &data)) == EXIT_OK) {
    const cJSON *pem = cJSON_GetObjectItemCaseSensitive(data, "pem");
    char num[32];
    field(data, "number", num, sizeof num);
    gnutls_datum_t in = {NULL, 0}, der = {NULL, 0};
    if (!cJSON_IsString(pem) || pem->valuestring == NULL) {
      fprintf(stderr, "estctl: crl: the answer holds no CRL\n");
      rc = EXIT_FAILED;
    } else if (o.pem) {
      rc = write_file(o.out, pem->valuestring, strlen(pem->valuestring));
    } else {
      in.data = (unsigned char *)pem->valuestring;
      in.size = (unsigned)strlen(pem->valuestring);
      if (gnutls_pem_base64_decode2("X509 CRL", &in, &der) < 0) {
        fprintf(stderr, "estctl: crl: the stored CRL is not PEM\n");
        rc = EXIT_FAILED;
      } else {
        rc = write_file(o.out, der.data, der.size);
      }
      gnutls_free(der.data);
    }
    if (rc == EXIT_OK)
      printf("CRL %s written to %s\n", num, o.out);
  }
  cJSON_Delete(resp);
  return rc;
}

static int do_audit(app *a, int argc, char **argv) {
  args o;
  int64_t req = 0, limit = 0;
  int rc = parse_args("audit", "jql", argc, argv, &o);
  if (rc != EXIT_OK)
    return rc;
  if (o.help)
    return fputs(help_audit, stdout), EXIT_OK;
  if (o.nargs != 0)
    return usage_error("audit", "unexpected argument '%s'", o.pos[0]);
  if (o.request != NULL && !parse_id(o.request, false, &req))
    return usage_error("audit", "bad request ID '%s'", o.request);
  if (o.limit != NULL && (!parse_id(o.limit, false, &limit) || limit > 10000))
    return usage_error("audit", "bad limit '%s' (1 to 10000)", o.limit);
  if ((rc = db_open(a, true)) != EXIT_OK)
    return rc;
  cJSON *cmd = cmd_new("listAudit"), *resp;
  const cJSON *data;
  if (req != 0)
    cmd_num(cmd, "requestId", req);
  if (limit != 0)
    cmd_num(cmd, "limit", limit);
  if ((rc = run(a, cmd, &resp, &data)) == EXIT_OK) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(data, "audit");
    if (o.json)
      print_json(list);
    else if (cJSON_GetArraySize(list) == 0)
      puts("no audit rows");
    else
      audit_table(list, true);
  }
  cJSON_Delete(resp);
  return rc;
}

static int do_raw(app *a, int argc, char **argv) {
  args o;
  int rc = parse_args("raw", "", argc, argv, &o);
  char *text = NULL;
  size_t len = 0;
  if (rc != EXIT_OK)
    return rc;
  if (o.help)
    return fputs(help_raw, stdout), EXIT_OK;
  if (o.nargs > 1)
    return usage_error("raw", "raw takes one envelope");
  if (o.nargs == 1 && strcmp(o.pos[0], "-") != 0) {
    len = strlen(o.pos[0]);
    text = strdup(o.pos[0]);
  } else {
    /* One byte over the cap, so ctl_run_envelope() sees it is too large. */
    text = malloc(CTL_MSG_MAX + 1);
    if (text != NULL)
      len = fread(text, 1, CTL_MSG_MAX + 1, stdin);
    if (text != NULL && ferror(stdin)) {
      free(text);
      fputs("estctl: cannot read stdin\n", stderr);
      return EXIT_FAILED;
    }
  }
  if (text == NULL)
    return fputs("estctl: out of memory\n", stderr), EXIT_FAILED;
  if ((rc = db_open(a, false)) != EXIT_OK) {
    free(text);
    return rc;
  }
  ctl_ctx c = {.s = a->s, .actor = a->actor, .may_write = true};
  char *reply = ctl_run_envelope(&c, text, len);
  free(text);
  if (reply == NULL)
    return fputs("estctl: out of memory\n", stderr), EXIT_FAILED;
  puts(reply);
  /* Exit 1 if any response is an error. */
  cJSON *r = cJSON_Parse(reply);
  const cJSON *arr = cJSON_GetObjectItemCaseSensitive(r, "responses"), *it;
  cJSON_ArrayForEach(it, arr) {
    if (cJSON_GetObjectItemCaseSensitive(it, "error") != NULL)
      rc = EXIT_FAILED;
  }
  if (r == NULL)
    rc = EXIT_FAILED;
  cJSON_Delete(r);
  cJSON_free(reply);
  return rc;
}

static int on_event(void *ctx, const store_audit_row *row) {
  const char *kind;
  cJSON *ev = ctl_event(row, &kind);
  (void)ctx;
  if (ev == NULL)
    return 0; /* not an event (or out of memory: printed below) */
  char *text = cJSON_PrintUnformatted(ev);
  cJSON_Delete(ev);
  if (text == NULL)
    return EST_ERR_NOMEM;
  printf("est-coaps/v1/events/%s %s\n", kind, text);
  cJSON_free(text);
  return 0;
}

static int do_events(app *a, int argc, char **argv) {
  args o;
  int64_t after = 0, limit = 0;
  int rc = parse_args("events", "al", argc, argv, &o);
  if (rc != EXIT_OK)
    return rc;
  if (o.help)
    return fputs(help_events, stdout), EXIT_OK;
  if (o.nargs != 0)
    return usage_error("events", "unexpected argument '%s'", o.pos[0]);
  if (o.after != NULL && !parse_id(o.after, true, &after))
    return usage_error("events", "bad audit ID '%s'", o.after);
  if (o.limit != NULL && !parse_id(o.limit, false, &limit))
    return usage_error("events", "bad limit '%s'", o.limit);
  if ((rc = db_open(a, true)) != EXIT_OK)
    return rc;
  est_err e = store_audit_since(a->s, after, (size_t)limit, on_event, NULL);
  if (e != EST_OK) {
    fprintf(stderr, "estctl: %s\n",
            e == EST_ERR_BUSY ? "database is busy, try again"
                              : store_errmsg(a->s));
    return exit_for(e);
  }
  return EXIT_OK;
}

/* ------------------------------------------------------------ main */

static const struct {
  const char *name;
  int (*run)(app *a, int argc, char **argv);
} commands[] = {
  {"list", do_list},     {"show", do_show},     {"approve", do_approve},
  {"reject", do_reject}, {"preauth", do_preauth}, {"certs", do_certs},
  {"revoke", do_revoke}, {"crl", do_crl},       {"audit", do_audit},
  {"backup", do_backup}, {"init", do_init},     {"prune", do_prune},
  {"raw", do_raw},
  {"events", do_events},
};

/* The login name for the audit trail: the session's login (so that
 * "sudo estctl" records the operator, not root), else the effective user. */
static void default_actor(app *a) {
  struct passwd pw, *res = NULL;
  char buf[4096];
  if (getlogin_r(a->actor_buf, sizeof a->actor_buf) == 0 &&
      a->actor_buf[0] != '\0') {
    a->actor = a->actor_buf;
    return;
  }
  if (getpwuid_r(geteuid(), &pw, buf, sizeof buf, &res) == 0 && res != NULL &&
      pw.pw_name != NULL && pw.pw_name[0] != '\0') {
    snprintf(a->actor_buf, sizeof a->actor_buf, "%s", pw.pw_name);
  } else {
    snprintf(a->actor_buf, sizeof a->actor_buf, "uid %ld", (long)geteuid());
  }
  a->actor = a->actor_buf;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
    {"db", required_argument, NULL, 'd'},
    {"actor", required_argument, NULL, 'a'},
    {"busy-timeout", required_argument, NULL, 'b'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
  };
  app a = {.busy_ms = DEFAULT_BUSY_MS};
  int ch, rc;
  int64_t v;

  opterr = 0;
  /* "+": stop at the command; its options are its own. */
  while ((ch = getopt_long(argc, argv, "+:hV", opts, NULL)) != -1) {
    switch (ch) {
    case 'd':
      a.db_path = optarg;
      break;
    case 'a':
      a.actor = optarg;
      break;
    case 'b':
      if (!parse_id(optarg, true, &v) || v > MAX_BUSY_MS)
        return usage_error(NULL, "bad busy timeout '%s' (0 to %d ms)", optarg,
                           MAX_BUSY_MS);
      a.busy_ms = (int)v;
      break;
    case 'h':
      fputs(usage_main, stdout);
      return EXIT_OK;
    case 'V':
      printf("estctl (est-coaps) %s, store schema %d\n", EST_VERSION, store_schema_version());
      return EXIT_OK;
    case ':':
      return usage_error(NULL, "option '%s' needs a value", argv[optind - 1]);
    default:
      return usage_error(NULL, "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind >= argc)
    return usage_error(NULL, "no command given");
  const char *name = argv[optind];
  int cmd = -1;
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp(commands[i].name, name) == 0)
      cmd = (int)i;
  if (cmd < 0) {
    if (strcmp(name, "help") == 0) {
      fputs(usage_main, stdout);
      return EXIT_OK;
    }
    return usage_error(NULL, "unknown command '%s'", name);
  }
  if (a.actor != NULL && a.actor[0] == '\0')
    return usage_error(NULL, "--actor must not be empty");
  if (a.actor == NULL) {
    default_actor(&a);
  } else {
    /* A name given is a claim: the audit row says who made it too. */
    const char *given = a.actor;
    default_actor(&a);
    if (strcmp(given, a.actor) != 0) {
      char who[sizeof a.actor_buf];
      snprintf(who, sizeof who, "%s", a.actor);
      int n = snprintf(a.actor_buf, sizeof a.actor_buf, "%.*s (unix %s)",
                       (int)(sizeof a.actor_buf / 2), given, who);
      if (n < 0 || (size_t)n >= sizeof a.actor_buf || strlen(given) > sizeof a.actor_buf / 2)
        return usage_error(NULL, "--actor is too long");
      a.actor = a.actor_buf;
    }
  }

  /* --help needs no database: let the command print it first. */
  bool wants_help = false;
  for (int i = optind + 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0)
      break;
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
      wants_help = true;
  }
  if (a.db_path == NULL && !wants_help)
    return usage_error(NULL, "--db PATH is required");
  if (a.db_path != NULL && a.db_path[0] == '\0')
    return usage_error(NULL, "--db PATH must not be empty");

  rc = commands[cmd].run(&a, argc - optind, argv + optind);
  store_close(a.s);
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "estctl: cannot write output: %s\n", strerror(errno));
    if (rc == EXIT_OK)
      rc = EXIT_FAILED;
  }
  return rc;
}
