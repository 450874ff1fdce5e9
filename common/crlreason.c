/* RFC 5280 §5.3.1 reason names (crlreason.h). */
#include "crlreason.h"

#include <stddef.h>
#include <strings.h>

static const struct {
  const char *name;
  unsigned code;
} reasons[] = {
    {"unspecified", 0},          {"keyCompromise", 1},        {"cACompromise", 2},
    {"affiliationChanged", 3},   {"superseded", 4},           {"cessationOfOperation", 5},
    {"certificateHold", 6},      {"privilegeWithdrawn", 9},   {"aACompromise", 10},
};

bool est_crl_reason_parse(const char *name, unsigned *code) {
  if (!name)
    return false;
  for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
    if (strcasecmp(name, reasons[i].name) == 0) {
      if (code)
        *code = reasons[i].code;
      return true;
    }
  }
  return false;
}

const char *est_crl_reason_name(unsigned code) {
  for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
    if (reasons[i].code == code)
      return reasons[i].name;
  return NULL;
}
