/* Fuzz the coapd config parser through its buffer API only: no file is
 * opened, so the input cannot make it touch the file system. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "host/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[512];
  coapd_config *cfg = NULL;
  est_err rc = coapd_config_parse_buf(
      (const char *)data, size, "/etc/coapd/fuzz.conf", &cfg, err, sizeof err);
  if (rc == EST_OK) {
    /* Walk everything the parser produced so ASan checks it. */
    char file[2048];
    for (size_t i = 0; i < cfg->nplugins; i++) {
      const coapd_plugin_conf *pc = &cfg->plugins[i];
      if (coapd_config_plugin_file(pc, "/usr/lib/est-coaps", file,
                                   sizeof file) == EST_OK &&
          !file[0])
        __builtin_trap();
      for (size_t j = 0; j < pc->nopts; j++)
        if (!pc->opts[j].key[0] || !pc->opts[j].value[0])
          __builtin_trap();
    }
    for (size_t i = 0; i < cfg->nlisten; i++)
      if (!cfg->listen[i].port || !cfg->listen[i].addr[0])
        __builtin_trap();
    if (!cfg->dtls_cert.path || !cfg->dtls_key.path || !cfg->dtls_ca.path)
      __builtin_trap();
  } else if (cfg || strncmp(err, "/etc/coapd/fuzz.conf", 20) != 0) {
    /* Every error names the file; failure leaves no config behind. */
    __builtin_trap();
  }
  coapd_config_free(cfg);
  return 0;
}
