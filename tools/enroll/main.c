/* est-enroll: command-line EST-coaps client (RFC 9148). */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/links.h"
#include "ops.h"

#define SAN_MAX 64

static const char usage_text[] =
    "Usage: est-enroll [OPTIONS] COMMAND [COMMAND OPTIONS]\n"
    "EST over secure CoAP (RFC 9148) client.\n"
    "\n"
    "Options (every command):\n"
    "  --server coaps://HOST[:PORT]  the EST server (port 5684 by default)\n"
    "  --cert PEM            our certificate: an IDevID, or the current\n"
    "                        certificate when re-enrolling\n"
    "  --key PEM             its private key\n"
    "  --trust PEM           trust anchors for the server certificate\n"
    "  --root PATH           EST root, e.g. /est (default: discover with\n"
    "                        /.well-known/core, else /.well-known/est)\n"
    "  --label LABEL         CA label: ROOT/LABEL/FUNCTION\n"
    "  --server-name NAME    name the server certificate must carry\n"
    "                        (default: HOST)\n"
    "  --block-size N        Block1/Block2 size: 16, 32, ... 1024\n"
    "  --timeout SECONDS     per handshake and per exchange (default 60)\n"
    "  -v, --verbose         say what happens; -vv, -vvv add libcoap logs\n"
    "  -h, --help            this text\n"
    "  -V, --version         the version\n"
    "\n"
    "Commands:\n"
    "  discover              list the EST resources the server announces\n"
    "  cacerts --out FILE [--der]\n"
    "                        the CA certificates, PEM (--der: the PKCS#7 as\n"
    "                        received)\n"
    "  csrattrs --out FILE   the CSR attributes (DER CsrAttrs)\n"
    "  enroll --subject DN [--san-dns NAME]... [--san-ip ADDR]...\n"
    "         --key-file FILE [--key-type TYPE] --out CERT\n"
    "                        enroll (sen) with the key in FILE; a new key is\n"
    "                        made (TYPE ec-p256, ec-p384, rsa-2048, rsa-3072;\n"
    "                        default ec-p256) if FILE does not exist\n"
    "  reenroll --key-file FILE [--key-type TYPE] --out CERT\n"
    "           [--renew-within DAYS]\n"
    "                        re-enroll (sren) with the subject and SAN of\n"
    "                        --cert; a new key if FILE does not exist (rekey);\n"
    "                        with --renew-within, do nothing while --cert has\n"
    "                        more than DAYS days left\n"
    "  serverkeygen --subject DN [--san-dns NAME]... [--san-ip ADDR]...\n"
    "               --key-out FILE --out CERT [--single-cert]\n"
    "                        the server makes the key (skg; skc with\n"
    "                        --single-cert)\n"
    "\n"
    "Options of enroll, reenroll and serverkeygen:\n"
    "  --max-wait SECONDS    keep retrying a pending (5.03) request this long\n"
    "                        (default 300; 0: do not wait)\n"
    "  --no-pop              no tls-unique in the CSR's challengePassword\n"
    "  --der                 write the certificate as DER (default PEM, with\n"
    "                        any chain the server sent)\n"
    "\n"
    "Files are written only on success, atomically; key files get mode 0600.\n"
    "A new key is also written when the server keeps the request pending\n"
    "(5.03), so that the next run continues the same request.\n"
    "\n"
    "Exit status:\n"
    "  0  success (also: reenroll --renew-within had nothing to do)\n"
    "  1  local error (a file cannot be read or written, out of memory)\n"
    "  2  usage error\n"
    "  3  still pending when --max-wait ran out (run again later)\n"
    "  4  rejected by the server (4.03 Forbidden, 4.01 Unauthorized)\n"
    "  5  any other protocol error (other 4.xx/5.xx, malformed answer, a\n"
    "     certificate that does not chain to the trust anchors or does not\n"
    "     match the key)\n"
    "  6  DTLS or transport failure (handshake, untrusted server, timeout)\n";

enum {
  O_SERVER = 256, O_ROOT, O_LABEL, O_CERT, O_KEY, O_TRUST, O_SERVER_NAME,
  O_BLOCK, O_TIMEOUT, O_VERSION, O_OUT, O_DER, O_SUBJECT, O_SAN_DNS, O_SAN_IP,
  O_KEY_FILE, O_KEY_TYPE, O_KEY_OUT, O_SINGLE, O_NO_POP, O_MAX_WAIT, O_RENEW
};

/* Which command options each command takes. */
#define F(x) (1u << ((x) - O_OUT))
static const unsigned cmd_allows[EC_CMD__MAX] = {
  [EC_CMD_DISCOVER] = 0,
  [EC_CMD_CACERTS] = F(O_OUT) | F(O_DER),
  [EC_CMD_CSRATTRS] = F(O_OUT),
  [EC_CMD_ENROLL] = F(O_OUT) | F(O_DER) | F(O_SUBJECT) | F(O_SAN_DNS) | F(O_SAN_IP) |
                    F(O_KEY_FILE) | F(O_KEY_TYPE) | F(O_NO_POP) | F(O_MAX_WAIT),
  [EC_CMD_REENROLL] = F(O_OUT) | F(O_DER) | F(O_KEY_FILE) | F(O_KEY_TYPE) |
                      F(O_NO_POP) | F(O_MAX_WAIT) | F(O_RENEW),
  [EC_CMD_SERVERKEYGEN] = F(O_OUT) | F(O_DER) | F(O_SUBJECT) | F(O_SAN_DNS) |
                          F(O_SAN_IP) | F(O_KEY_OUT) | F(O_SINGLE) | F(O_NO_POP) |
                          F(O_MAX_WAIT),
};
static const unsigned cmd_needs[EC_CMD__MAX] = {
  [EC_CMD_DISCOVER] = 0,
  [EC_CMD_CACERTS] = F(O_OUT),
  [EC_CMD_CSRATTRS] = F(O_OUT),
  [EC_CMD_ENROLL] = F(O_OUT) | F(O_SUBJECT) | F(O_KEY_FILE),
  [EC_CMD_REENROLL] = F(O_OUT) | F(O_KEY_FILE),
  [EC_CMD_SERVERKEYGEN] = F(O_OUT) | F(O_SUBJECT) | F(O_KEY_OUT),
};
static const char *const cmd_names[EC_CMD__MAX] = {
  "discover", "cacerts", "csrattrs", "enroll", "reenroll", "serverkeygen"};
static const char *const opt_names[] = {
  "--out", "--der", "--subject", "--san-dns", "--san-ip", "--key-file",
  "--key-type", "--key-out", "--single-cert", "--no-pop", "--max-wait",
  "--renew-within"};

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
  va_list ap;
  fputs("est-enroll: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputs("\nTry 'est-enroll --help'.\n", stderr);
  return 2;
}

static bool parse_ulong(const char *s, unsigned long min, unsigned long max,
                        unsigned long *out) {
  char *end = NULL;
  if (!s || !isdigit((unsigned char)s[0]))
    return false;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || *end || v < min || v > max)
    return false;
  *out = v;
  return true;
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {
    {"server", required_argument, NULL, O_SERVER},
    {"root", required_argument, NULL, O_ROOT},
    {"label", required_argument, NULL, O_LABEL},
    {"cert", required_argument, NULL, O_CERT},
    {"key", required_argument, NULL, O_KEY},
    {"trust", required_argument, NULL, O_TRUST},
    {"server-name", required_argument, NULL, O_SERVER_NAME},
    {"block-size", required_argument, NULL, O_BLOCK},
    {"timeout", required_argument, NULL, O_TIMEOUT},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, O_VERSION},
    {"out", required_argument, NULL, O_OUT},
    {"der", no_argument, NULL, O_DER},
    {"subject", required_argument, NULL, O_SUBJECT},
    {"san-dns", required_argument, NULL, O_SAN_DNS},
    {"san-ip", required_argument, NULL, O_SAN_IP},
    {"key-file", required_argument, NULL, O_KEY_FILE},
    {"key-type", required_argument, NULL, O_KEY_TYPE},
    {"key-out", required_argument, NULL, O_KEY_OUT},
    {"single-cert", no_argument, NULL, O_SINGLE},
    {"no-pop", no_argument, NULL, O_NO_POP},
    {"max-wait", required_argument, NULL, O_MAX_WAIT},
    {"renew-within", required_argument, NULL, O_RENEW},
    {NULL, 0, NULL, 0}};
  ec_run r;
  const char *server = NULL, *dns[SAN_MAX], *ips[SAN_MAX];
  unsigned given = 0;
  unsigned long v;
  char diag[512];
  int ch;

  memset(&r, 0, sizeof r);
  r.key_type = EC_KEY_EC_P256;
  r.max_wait_s = EC_DEFAULT_MAX_WAIT;
  r.renew_within_days = -1;
  r.conf.timeout_s = 60;
  r.san_dns = dns;
  r.san_ip = ips;
  opterr = 0;
  while ((ch = getopt_long(argc, argv, ":vhV", longopts, NULL)) != -1) {
    if (ch >= O_OUT)
      given |= F(ch);
    switch (ch) {
    case O_SERVER:
      server = optarg;
      break;
    case O_ROOT:
      r.root = optarg;
      break;
    case O_LABEL:
      r.label = optarg;
      break;
    case O_CERT:
      r.conf.cert_file = optarg;
      break;
    case O_KEY:
      r.conf.key_file = optarg;
      break;
    case O_TRUST:
      r.conf.trust_file = optarg;
      break;
    case O_SERVER_NAME:
      r.conf.server_name = optarg;
      break;
    case O_BLOCK:
      if (!parse_ulong(optarg, 16, 1024, &v) || (v & (v - 1)))
        return usage_error("--block-size '%s': want 16, 32, 64, ... 1024", optarg);
      r.conf.block_size = (unsigned)v;
      break;
    case O_TIMEOUT:
      if (!parse_ulong(optarg, 1, 3600, &v))
        return usage_error("--timeout '%s': want 1 to 3600 seconds", optarg);
      r.conf.timeout_s = (unsigned)v;
      break;
    case 'v':
      r.verbose++;
      r.conf.verbose = r.verbose;
      break;
    case 'h':
      fputs(usage_text, stdout);
      return 0;
    case 'V':
    case O_VERSION:
      printf("est-enroll %s\n", EST_VERSION);
      return 0;
    case O_OUT:
      r.out = optarg;
      break;
    case O_DER:
      r.der = true;
      break;
    case O_SUBJECT:
      r.subject = optarg;
      break;
    case O_SAN_DNS:
      if (r.san_dns_count == SAN_MAX)
        return usage_error("at most %d --san-dns", SAN_MAX);
      dns[r.san_dns_count++] = optarg;
      break;
    case O_SAN_IP:
      if (r.san_ip_count == SAN_MAX)
        return usage_error("at most %d --san-ip", SAN_MAX);
      ips[r.san_ip_count++] = optarg;
      break;
    case O_KEY_FILE:
      r.key_file = optarg;
      break;
    case O_KEY_TYPE:
      if (ec_key_type_parse(optarg, &r.key_type) != EST_OK)
        return usage_error("--key-type '%s': want ec-p256, ec-p384, rsa-2048 or rsa-3072",
                           optarg);
      break;
    case O_KEY_OUT:
      r.key_out = optarg;
      break;
    case O_SINGLE:
      r.single_cert = true;
      break;
    case O_NO_POP:
      r.no_pop = true;
      break;
    case O_MAX_WAIT:
      if (!parse_ulong(optarg, 0, 315360000ul, &v))
        return usage_error("--max-wait '%s': want a number of seconds", optarg);
      r.max_wait_s = v;
      break;
    case O_RENEW:
      if (!parse_ulong(optarg, 0, 36500, &v))
        return usage_error("--renew-within '%s': want 0 to 36500 days", optarg);
      r.renew_within_days = (long)v;
      break;
    case ':':
      return usage_error("%s needs a value", argv[optind - 1]);
    case '?':
    default:
      return usage_error("unknown option '%s'", argv[optind - 1]);
    }
  }

  if (optind >= argc)
    return usage_error("no command given");
  if (optind + 1 < argc)
    return usage_error("unexpected argument '%s'", argv[optind + 1]);
  int cmd = 0;
  while (cmd < EC_CMD__MAX && strcmp(argv[optind], cmd_names[cmd]) != 0)
    cmd++;
  if (cmd == EC_CMD__MAX)
    return usage_error("unknown command '%s'", argv[optind]);
  r.cmd = (ec_cmd)cmd;
  for (unsigned i = 0; i < sizeof opt_names / sizeof opt_names[0]; i++) {
    if ((given & (1u << i)) && !(cmd_allows[cmd] & (1u << i))) {
      return usage_error("%s does not take %s", cmd_names[cmd], opt_names[i]);
    }
    if ((cmd_needs[cmd] & (1u << i)) && !(given & (1u << i))) {
      return usage_error("%s needs %s", cmd_names[cmd], opt_names[i]);
    }
  }

  if (!server)
    return usage_error("--server coaps://HOST[:PORT] is required");
  if (ec_uri_parse(server, &r.server) != EST_OK || !r.server.has_authority ||
      (r.server.path[0] && strcmp(r.server.path, "/") != 0))
    return usage_error("--server '%s': want coaps://HOST[:PORT] (use --root for a path)",
                       server);
  if (!r.conf.cert_file || !r.conf.key_file || !r.conf.trust_file)
    return usage_error("--cert, --key and --trust are required (RFC 9148 §3)");
  if (r.root) {
    ec_uri u;
    if (r.root[0] != '/' || ec_uri_parse(r.root, &u) != EST_OK || u.has_authority)
      return usage_error("--root '%s': want an absolute path like /est", r.root);
  }
  if (r.label && proto_label_check(r.label) != EST_OK)
    return usage_error("--label '%s': 1-63 of A-Z a-z 0-9 . _ ~ -, not a function name",
                       r.label);
  if (r.out && ((r.key_file && strcmp(r.out, r.key_file) == 0) ||
                (r.key_out && strcmp(r.out, r.key_out) == 0)))
    return usage_error("--out '%s' is also the key file", r.out);
  if (r.cmd == EC_CMD_ENROLL || r.cmd == EC_CMD_SERVERKEYGEN) {
    ec_csr_params p;
    memset(&p, 0, sizeof p);
    p.subject = r.subject;
    p.san_dns = r.san_dns;
    p.san_dns_count = r.san_dns_count;
    p.san_ip = r.san_ip;
    p.san_ip_count = r.san_ip_count;
    if (ec_csr_params_check(&p, diag, sizeof diag) != EST_OK)
      return usage_error("%s", diag);
  }

  est_err rc = ec_run_command(&r, diag, sizeof diag);
  ec_client_cleanup();
  if (rc != EST_OK) {
    fprintf(stderr, "est-enroll: %s\n", diag[0] ? diag : est_strerror(rc));
    /* For scripts and bug reports: which error, and the exit status it maps to. */
    if (r.verbose)
      fprintf(stderr, "est-enroll: error %s, exit status %d\n", est_err_name(rc),
              ec_exit_code(rc));
  }
  fflush(stdout);
  return ec_exit_code(rc);
}
