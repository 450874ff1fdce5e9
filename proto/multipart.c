/* application/multipart-core (CF 62, RFC 8710) for /skg and /skc
 * (RFC 9148 §4.8): encode with libcbor, decode strictly without allocating. */
#define _DEFAULT_SOURCE /* explicit_bzero */
#include "multipart.h"

#include <cbor.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Bytes a CBOR head (major type + argument) takes in preferred
 * serialization (RFC 8949 §4.2.1); libcbor emits heads this way. */
static size_t head_size(uint64_t v) {
  if (v <= 23)
    return 1;
  if (v <= UINT8_MAX)
    return 2;
  if (v <= UINT16_MAX)
    return 3;
  if (v <= UINT32_MAX)
    return 5;
  return 9;
}

/* Wipe the byte strings libcbor copied (they may hold a private key)
 * before the tree is freed. */
static void wipe_items(cbor_item_t *arr) {
  cbor_item_t **items = cbor_array_handle(arr);
  size_t n = cbor_array_size(arr);
  for (size_t i = 0; i < n; i++) {
    if (cbor_isa_bytestring(items[i]) && cbor_bytestring_handle(items[i]))
      explicit_bzero(cbor_bytestring_handle(items[i]),
                     cbor_bytestring_length(items[i]));
  }
}

/* Push @p item (may be NULL after a failed build) and drop our reference:
 * the array then holds the only one. */
static bool push_item(cbor_item_t *arr, cbor_item_t *item) {
  if (!item)
    return false;
  bool ok = cbor_array_push(arr, item);
  if (!ok && cbor_isa_bytestring(item) && cbor_bytestring_handle(item))
    explicit_bzero(cbor_bytestring_handle(item),
                   cbor_bytestring_length(item));
  cbor_decref(&item);
  return ok;
}

est_err mp_encode(const mp_part *parts, size_t n, uint8_t **out,
                  size_t *out_len) {
  est_err rc = EST_ERR_NOMEM;
  cbor_item_t *arr = NULL;
  uint8_t *buf = NULL;
  size_t total;

  if (!out || !out_len)
    return EST_ERR_INVALID;
  *out = NULL;
  *out_len = 0;
  if (!parts || n == 0 || n > SIZE_MAX / 2)
    return EST_ERR_INVALID;

  /* Size the output exactly, so libcbor writes into one buffer of ours:
   * cbor_serialize_alloc() in libcbor 0.8 grows by realloc() and would
   * leave unwiped partial copies of the key on the heap. */
  total = head_size(2 * (uint64_t)n);
  for (size_t i = 0; i < n; i++) {
    if (!parts[i].data && parts[i].len)
      return EST_ERR_INVALID;
    size_t item = head_size(parts[i].cf) + head_size(parts[i].len);
    if (parts[i].len > SIZE_MAX - item || total > SIZE_MAX - item - parts[i].len)
      return EST_ERR_TOO_LARGE;
    total += item + parts[i].len;
  }

  arr = cbor_new_definite_array(2 * n);
  if (!arr)
    goto out;
  for (size_t i = 0; i < n; i++) {
    /* RFC 8949 §4.2.1 preferred serialization: smallest uint width, so
     * 62 is 18 3E and 284 is 19 01 1C (RFC 9148 App. A.3). */
    cbor_item_t *cf = parts[i].cf <= UINT8_MAX
                          ? cbor_build_uint8((uint8_t)parts[i].cf)
                          : cbor_build_uint16(parts[i].cf);
    if (!push_item(arr, cf))
      goto out;
    /* An empty part gets no libcbor copy (malloc(0)/memcpy(NULL) there). */
    cbor_item_t *bs = parts[i].len
                          ? cbor_build_bytestring(parts[i].data, parts[i].len)
                          : cbor_new_definite_bytestring();
    if (!push_item(arr, bs))
      goto out;
  }

  buf = malloc(total);
  if (!buf)
    goto out;
  if (cbor_serialize(arr, buf, total) != total) {
    rc = EST_ERR_INTERNAL;
    goto out;
  }
  *out = buf;
  *out_len = total;
  buf = NULL;
  rc = EST_OK;

out:
  if (buf) {
    explicit_bzero(buf, total);
    free(buf);
  }
  if (arr) {
    wipe_items(arr);
    cbor_decref(&arr);
  }
  return rc;
}

/* Decoder: cbor_stream_decode() reports one data item head per call; the
 * callbacks record what it was, everything else keeps kind == MP_OTHER. */
enum mp_kind { MP_OTHER = 0, MP_ARRAY, MP_UINT, MP_BSTR };

struct mp_item {
  enum mp_kind kind;
  uint64_t val;        /* uint value or array size */
  const uint8_t *data; /* bstr content, inside the input */
  size_t len;
};

/* libcbor has one callback per wire width; all of them mean "a uint". */
static void set_uint(void *ctx, uint64_t v) {
  struct mp_item *it = ctx;
  it->kind = MP_UINT;
  it->val = v;
}

static void on_uint8(void *ctx, uint8_t v) { set_uint(ctx, v); }
static void on_uint16(void *ctx, uint16_t v) { set_uint(ctx, v); }
static void on_uint32(void *ctx, uint32_t v) { set_uint(ctx, v); }
static void on_uint64(void *ctx, uint64_t v) { set_uint(ctx, v); }

/* Only definite byte strings reach this; 0x5F goes to byte_string_start,
 * which stays a no-op and so is rejected as MP_OTHER. */
static void on_bstr(void *ctx, cbor_data data, size_t len) {
  struct mp_item *it = ctx;
  it->kind = MP_BSTR;
  it->data = data;
  it->len = len;
}

static void on_array(void *ctx, size_t size) {
  struct mp_item *it = ctx;
  it->kind = MP_ARRAY;
  it->val = size;
}

est_err mp_decode_pair(const uint8_t *buf, size_t len, mp_part out[2]) {
  struct cbor_callbacks cb = cbor_empty_callbacks;
  mp_part parts[2];
  size_t off = 0;

  if (!out || (!buf && len))
    return EST_ERR_INVALID;
  if (len > MP_BODY_MAX)
    return EST_ERR_TOO_LARGE;
  cb.uint8 = on_uint8;
  cb.uint16 = on_uint16;
  cb.uint32 = on_uint32;
  cb.uint64 = on_uint64;
  cb.byte_string = on_bstr;
  cb.array_start = on_array;

  /* RFC 9148 §4.8: array(4) [uint cf, bstr, uint cf, bstr]. Heads need not
   * be in preferred form (RFC 8949 §4.2 is not required by RFC 8710). */
  for (unsigned step = 0; step < 5; step++) {
    struct mp_item it = {0};
    struct cbor_decoder_result r;

    if (off >= len)
      return EST_ERR_MALFORMED;
    /* libcbor checks every declared length against the bytes left
     * (claim_bytes), so a huge length gives NEDATA, not an overrun. */
    r = cbor_stream_decode(buf + off, len - off, &cb, &it);
    if (r.status != CBOR_DECODER_FINISHED || r.read == 0 ||
        r.read > len - off)
      return EST_ERR_MALFORMED;
    off += r.read;

    if (step == 0) {
      if (it.kind != MP_ARRAY || it.val != 4)
        return EST_ERR_MALFORMED;
    } else if (step % 2 == 1) {
      if (it.kind != MP_UINT || it.val > UINT16_MAX)
        return EST_ERR_MALFORMED;
      parts[step / 2].cf = (uint16_t)it.val;
    } else {
      if (it.kind != MP_BSTR)
        return EST_ERR_MALFORMED;
      parts[step / 2 - 1].data = it.data;
      parts[step / 2 - 1].len = it.len;
    }
  }
  if (off != len)
    return EST_ERR_MALFORMED;
  out[0] = parts[0];
  out[1] = parts[1];
  return EST_OK;
}
