/* Outer DER walking shared by server and client (proto/der.h). */
#include "der.h"

bool der_next(const uint8_t *p, size_t end, size_t off, der_tlv *t) {
  if (off >= end || end - off < 2)
    return false;
  uint8_t tag = p[off];
  if ((tag & 0x1f) == 0x1f)
    return false;
  size_t i = off + 1;
  size_t len = p[i++];
  if (len & 0x80) {
    size_t nb = len & 0x7f;
    if (nb == 0 || nb > 4 || end - i < nb)
      return false;
    len = 0;
    for (size_t k = 0; k < nb; k++)
      len = (len << 8) | p[i++];
  }
  if (end - i < len)
    return false;
  t->tag = tag;
  t->off = off;
  t->hdr = i - off;
  t->len = len;
  return true;
}

size_t der_end(const der_tlv *t) { return t->off + t->hdr + t->len; }

bool der_one_sequence(const uint8_t *der, size_t len) {
  der_tlv t;
  return der && der_next(der, len, 0, &t) && t.tag == 0x30 && der_end(&t) == len;
}

