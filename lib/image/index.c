/* s3bd: the index file: encode, decode, write, read and look up.  See
 * include/s3bd/index.h; the byte layout is docs/index-format.md.  This
 * file holds the format's checks and the encoder; indexdecode.c decodes,
 * indexfile.c writes, reads and looks up.
 *
 * How it works.  An index is a 264-byte header (the counts and a table
 * of five sections, CRC-32 protected; version 2, with Pipe records: 304
 * bytes and six sections) followed by the sections, each one
 * zstd frame with its own CRC-32 over the stored bytes.  Inside a section
 * the records are stored as columns, and every multi-byte column as byte
 * planes (all the low bytes, then all the next bytes...), so that zstd
 * sees long runs of equal bytes rather than an 8-byte stride.  Object
 * keys are front-coded against the previous key, first blocks are stored
 * as the gap after the previous object's last block (0 when the data is
 * packed), mtimes as zigzag deltas, and the usual MD5 ETags as 16 binary
 * bytes: a million typical objects take about 24 bytes each.
 *
 * Decoding trusts nothing.  In order: magic, version, header CRC, the
 * section table (sections contiguous, in order, exactly filling the
 * buffer), each section's CRC, its zstd frame (one frame whose content
 * size is the declared raw length), then each column with every count
 * and length checked against the raw size before anything is allocated
 * or read.  Last, the decoded index goes through index_check, the same
 * checks index_encode applies to its input: an index that decodes is one
 * the encoder would have written.
 *
 * Ownership: a decoded index points into a struct store (indexdecode.c)
 * hung on idx->priv; index_free releases it.  An index built by a caller
 * has priv == NULL and is never freed here.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "s3bd/error.h"
#include "s3bd/index.h"

#include "indexint.h"
#include "common/strbuf.h"

/* ---- The format's constants (docs/index-format.md, indexint.h) ---- */

const char index_magic[8] = "S3BDIDX";

const char *const index_section_names[NSECTIONS + 1] = {
  "?", "SOURCE", "OBJECTS", "META_RUNS", "META_CONTENT", "LEFTOUT", "RECORDS",
};

#define ZSTD_LEVEL 3

/* ---- Little-endian fields, zigzag deltas, ETags, shared prefixes ---- */

static void
put32 (unsigned char *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static void
put64 (unsigned char *p, uint64_t v)
{
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t
zigzag (uint64_t d)
{
  return (d << 1) ^ (0 - (d >> 63));
}

static int
is_lower_hex (const char *s, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return 0;
  return 1;
}

static enum etag_kind
etag_kind (const char *etag)
{
  size_t len = strnlen (etag, 35);

  if (len == 34 && etag[0] == '"' && etag[33] == '"'
      && is_lower_hex (etag + 1, 32))
    return ETAG_MD5_QUOTED;
  if (len == 32 && is_lower_hex (etag, 32))
    return ETAG_MD5_BARE;
  return ETAG_STRING;
}

static unsigned
hexval (char c)
{
  return c <= '9' ? (unsigned)(c - '0') : (unsigned)(c - 'a' + 10);
}

bool
index_etag_md5 (const char *etag, unsigned char md5[16])
{
  enum etag_kind kind = etag_kind (etag);
  const char *hex = etag + (kind == ETAG_MD5_QUOTED);

  if (kind == ETAG_STRING)
    return false;
  for (int i = 0; i < 16; i++)
    md5[i]
        = (unsigned char)(hexval (hex[2 * i]) << 4 | hexval (hex[2 * i + 1]));
  return true;
}

static size_t
shared_prefix (const char *a, const char *b)
{
  size_t n = 0;

  while (a[n] && a[n] == b[n])
    n++;
  return n;
}

/* ---- Checks shared by encode (on its input) and decode (on its
 * output) ---- */

int
index_check_header (const struct s3bd_index *idx, struct s3bd_error *err)
{
  uint32_t bs = idx->block_size;

  if (bs < 512 || bs > 65536 || (bs & (bs - 1)) != 0)
    return s3bd_fail (err, S3BD_EINVAL,
                      "index: block size %" PRIu32
                      " is not a power of two from 512 to 65536",
                      bs);
  if (idx->device_blocks == 0 || idx->device_blocks > UINT64_MAX / bs)
    return s3bd_fail (err, S3BD_EINVAL,
                      "index: device size of %" PRIu64 " blocks is invalid",
                      idx->device_blocks);
  if (idx->data_start > idx->device_blocks)
    return s3bd_fail (err, S3BD_EINVAL,
                      "index: data region starts at block %" PRIu64
                      ", past the end of the device (%" PRIu64 " blocks)",
                      idx->data_start, idx->device_blocks);
  if (idx->source_kind != INDEX_SOURCE_PREFIX
      && idx->source_kind != INDEX_SOURCE_MANIFEST
      && idx->source_kind != INDEX_SOURCE_AUGMENTED_MANIFEST)
    return s3bd_fail (err, S3BD_EINVAL, "index: unknown source kind %d",
                      (int)idx->source_kind);
  if (idx->shard_count == 0 || idx->shard_index >= idx->shard_count)
    return s3bd_fail (err, S3BD_EINVAL,
                      "index: shard %" PRIu32 " of %" PRIu32 " is invalid",
                      idx->shard_index, idx->shard_count);
  return 0;
}

static int
check_key (const char *what, uint64_t i, const char *key,
           struct s3bd_error *err)
{
  size_t n;

  if (key == NULL)
    return s3bd_fail (err, S3BD_EINVAL, "index %s %" PRIu64 ": no key", what,
                      i);
  n = strnlen (key, MAX_KEY + 1);
  if (n == 0 || n > MAX_KEY)
    return s3bd_fail (err, S3BD_EINVAL, "index %s %" PRIu64 ": key %s", what, i,
                      n ? "over 1024 bytes" : "empty");
  return 0;
}

static int
check_objects (const struct s3bd_index *idx, struct s3bd_error *err)
{
  uint64_t end = idx->data_start; /* past the previous object's data */

  if (idx->nobjects && idx->objects == NULL)
    return s3bd_fail (err, S3BD_EINVAL, "index: objects missing");
  for (uint64_t i = 0; i < idx->nobjects; i++)
    {
      const struct index_object *o = &idx->objects[i];
      uint64_t nb;

      if (check_key ("object", i, o->key, err) == -1)
        return -1;
      if (o->etag == NULL || strnlen (o->etag, MAX_ETAG + 1) > MAX_ETAG)
        return s3bd_fail (err, S3BD_EINVAL,
                          "index object %" PRIu64 " (%s): %s ETag", i, o->key,
                          o->etag ? "over 1024-byte" : "no");
      if (o->bucket >= idx->nbuckets)
        return s3bd_fail (err, S3BD_EINVAL,
                          "index object %" PRIu64 " (%s): bucket %" PRIu32
                          " of %" PRIu32,
                          i, o->key, o->bucket, idx->nbuckets);
      if (o->mtime_nsec >= 1000000000)
        return s3bd_fail (err, S3BD_EINVAL,
                          "index object %" PRIu64 " (%s): mtime_nsec %" PRIu32
                          " out of range",
                          i, o->key, o->mtime_nsec);
      if (o->first_block < end)
        return s3bd_fail (err, S3BD_EINVAL,
                          "index object %" PRIu64 " (%s): first block %" PRIu64
                          " %s (%" PRIu64 ")",
                          i, o->key, o->first_block,
                          i ? "overlaps or precedes the previous object's"
                            : "is before the data region",
                          end);
      nb = object_blocks (o->size, idx->block_size);
      if (o->first_block > idx->device_blocks
          || nb > idx->device_blocks - o->first_block)
        return s3bd_fail (
            err, S3BD_EINVAL,
            "index object %" PRIu64 " (%s): blocks %" PRIu64 "+%" PRIu64
            " are past the end of the device (%" PRIu64 " blocks)",
            i, o->key, o->first_block, nb, idx->device_blocks);
      end = o->first_block + nb;
    }
  return 0;
}

static int
check_runs (const struct s3bd_index *idx, struct s3bd_error *err)
{
  uint64_t end = 0, j = 0;

  if (idx->nruns && idx->runs == NULL)
    return s3bd_fail (err, S3BD_EINVAL, "index: metadata runs missing");
  if (idx->ncontent && idx->content == NULL)
    return s3bd_fail (err, S3BD_EINVAL, "index: metadata content missing");
  if (idx->ncontent > SIZE_MAX / idx->block_size)
    return s3bd_fail (err, S3BD_EINVAL,
                      "index: %" PRIu64 " metadata blocks are too many",
                      idx->ncontent);
  for (uint64_t i = 0; i < idx->nruns; i++)
    {
      const struct index_meta_run *r = &idx->runs[i];
      uint64_t need = r->repeated ? 1 : r->count;

      if (r->count == 0)
        return s3bd_fail (err, S3BD_EINVAL,
                          "index metadata run %" PRIu64 ": empty", i);
      if (r->block < end)
        return s3bd_fail (err, S3BD_EINVAL,
                          "index metadata run %" PRIu64 ": block %" PRIu64
                          " overlaps or precedes the previous run",
                          i, r->block);
      if (r->block > idx->device_blocks
          || r->count > idx->device_blocks - r->block)
        return s3bd_fail (err, S3BD_EINVAL,
                          "index metadata run %" PRIu64 ": blocks %" PRIu64
                          "+%" PRIu32 " are past the end of the device",
                          i, r->block, r->count);
      if (r->first >= idx->ncontent || need > idx->ncontent - r->first)
        return s3bd_fail (err, S3BD_EINVAL,
                          "index metadata run %" PRIu64 ": content %" PRIu32
                          "+%" PRIu64 " of %" PRIu64,
                          i, r->first, need, idx->ncontent);
      end = r->block + r->count;

      /* Both lists are sorted: walk the objects alongside, past those
       * that end before this run (or hold no blocks at all).
       */
      while (
          j < idx->nobjects
          && (idx->objects[j].size == 0
              || idx->objects[j].first_block
                         + object_blocks (idx->objects[j].size, idx->block_size)
                     <= r->block))
        j++;
      if (j < idx->nobjects && idx->objects[j].first_block < end)
        return s3bd_fail (err, S3BD_EINVAL,
                          "index metadata run %" PRIu64 " (blocks %" PRIu64
                          "+%" PRIu32 ") overlaps object %" PRIu64 " (%s)",
                          i, r->block, r->count, j, idx->objects[j].key);
    }
  return 0;
}

static int
check_source (const struct s3bd_index *idx, struct s3bd_error *err)
{
  if (idx->prefix == NULL || strlen (idx->prefix) > UINT32_MAX)
    return s3bd_fail (err, S3BD_EINVAL, "index: %s source prefix",
                      idx->prefix ? "over-long" : "no");
  if (idx->nbuckets && idx->buckets == NULL)
    return s3bd_fail (err, S3BD_EINVAL, "index: buckets missing");
  for (uint32_t i = 0; i < idx->nbuckets; i++)
    if (idx->buckets[i] == NULL || idx->buckets[i][0] == '\0'
        || strlen (idx->buckets[i]) > UINT32_MAX)
      return s3bd_fail (err, S3BD_EINVAL, "index bucket %" PRIu32 ": no name",
                        i);
  return 0;
}

static int
check_left (const struct s3bd_index *idx, struct s3bd_error *err)
{
  if (idx->nleft && idx->left == NULL)
    return s3bd_fail (err, S3BD_EINVAL, "index: left-out keys missing");
  for (uint64_t i = 0; i < idx->nleft; i++)
    {
      const struct index_leftout *l = &idx->left[i];

      if (check_key ("left-out key", i, l->key, err) == -1)
        return -1;
      if (l->bucket >= idx->nbuckets)
        return s3bd_fail (err, S3BD_EINVAL,
                          "index left-out key %" PRIu64 " (%s): bucket %" PRIu32
                          " of %" PRIu32,
                          i, l->key, l->bucket, idx->nbuckets);
      if (l->reason == 0)
        return s3bd_fail (err, S3BD_EINVAL,
                          "index left-out key %" PRIu64 " (%s): no reason", i,
                          l->key);
    }
  return 0;
}

static int
check_records (const struct s3bd_index *idx, struct s3bd_error *err)
{
  if (idx->nrecords == 0)
    return 0;
  if (idx->source_kind != INDEX_SOURCE_AUGMENTED_MANIFEST)
    return s3bd_fail (err, S3BD_EINVAL,
                      "index: Pipe records, but the source is not an "
                      "augmented manifest");
  if (idx->records == NULL)
    return s3bd_fail (err, S3BD_EINVAL, "index: records missing");
  if (!idx->records[0].first)
    return s3bd_fail (err, S3BD_EINVAL,
                      "index record 0: does not start a line");
  for (uint64_t i = 0; i < idx->nrecords; i++)
    {
      const struct index_record *r = &idx->records[i];

      if (r->object != INDEX_RECORD_INLINE)
        {
          if (r->object >= idx->nobjects)
            return s3bd_fail (err, S3BD_EINVAL,
                              "index record %" PRIu64 ": object %" PRIu64
                              " of %" PRIu64,
                              i, r->object, idx->nobjects);
          continue;
        }
      if (r->text == NULL || r->len == 0 || r->len > INDEX_MAX_INLINE)
        return s3bd_fail (err, S3BD_EINVAL,
                          "index record %" PRIu64
                          ": an inline value of %" PRIu32 " bytes (1 to %u)",
                          i, r->len, INDEX_MAX_INLINE);
      if (memchr (r->text, '\0', r->len) != NULL)
        return s3bd_fail (err, S3BD_EINVAL,
                          "index record %" PRIu64 ": NUL byte in a value", i);
    }
  return 0;
}

int
index_check (const struct s3bd_index *idx, struct s3bd_error *err)
{
  if (index_check_header (idx, err) == -1 || check_source (idx, err) == -1
      || check_objects (idx, err) == -1 || check_runs (idx, err) == -1
      || check_left (idx, err) == -1 || check_records (idx, err) == -1)
    return -1;
  return 0;
}

/* ---- Encoding ---- */

struct section_out
{
  unsigned char *data;
  size_t stored;
  size_t raw;
  uint32_t crc;
};

/* Appends a column of n values of `width` bytes as byte planes: byte k
 * of value i lands at k * n + i.  A failed append sticks in b.
 */
static void
put_column (struct strbuf *b, const uint64_t *v, size_t n, unsigned width)
{
  unsigned char chunk[4096];

  for (unsigned k = 0; k < width; k++)
    for (size_t i = 0; i < n; i += sizeof chunk)
      {
        size_t m = n - i < sizeof chunk ? n - i : sizeof chunk;

        for (size_t j = 0; j < m; j++)
          chunk[j] = (unsigned char)(v[i + j] >> (8 * k));
        strbuf_add (b, chunk, m);
      }
}

/* A front-coded key list: for each key the bytes it shares with the one
 * before, the bytes that follow; then those following bytes.  col has
 * room for n values.
 */
static void
put_keys (struct strbuf *b, const char *const *keys, size_t n, uint64_t *col)
{
  size_t i;

  for (i = 0; i < n; i++)
    col[i] = i ? shared_prefix (keys[i - 1], keys[i]) : 0;
  put_column (b, col, n, 2);
  for (i = 0; i < n; i++)
    col[i] = strlen (keys[i]) - col[i];
  put_column (b, col, n, 2);
  for (i = 0; i < n; i++)
    strbuf_adds (b, keys[i] + (i ? shared_prefix (keys[i - 1], keys[i]) : 0));
}

static void
encode_source (const struct s3bd_index *idx, struct strbuf *b)
{
  for (uint32_t i = 0; i <= idx->nbuckets; i++)
    {
      const char *s = i == 0 ? idx->prefix : idx->buckets[i - 1];
      unsigned char n[4];

      put32 (n, (uint32_t)strlen (s)); /* check_source bounded it */
      strbuf_add (b, n, 4);
      strbuf_adds (b, s);
    }
}

static void
encode_objects (const struct s3bd_index *idx, struct strbuf *b, uint64_t *col,
                const char **keys)
{
  const struct index_object *o = idx->objects;
  size_t n = idx->nobjects, nstr = 0, i;
  uint64_t cursor = idx->data_start, prev = 0;

  for (i = 0; i < n; i++)
    keys[i] = o[i].key;
  put_keys (b, keys, n, col);
  for (i = 0; i < n; i++)
    col[i] = etag_kind (o[i].etag);
  put_column (b, col, n, 1);
  for (i = 0; i < n; i++)
    col[i] = o[i].bucket;
  put_column (b, col, n, 4);
  for (i = 0; i < n; i++)
    col[i] = o[i].size;
  put_column (b, col, n, 8);
  for (i = 0; i < n; i++)
    {
      col[i] = zigzag ((uint64_t)o[i].mtime - prev);
      prev = (uint64_t)o[i].mtime;
    }
  put_column (b, col, n, 8);
  for (i = 0; i < n; i++)
    col[i] = o[i].mtime_nsec;
  put_column (b, col, n, 4);
  for (i = 0; i < n; i++)
    {
      col[i] = o[i].first_block - cursor; /* >= 0: check_objects */
      cursor = o[i].first_block + object_blocks (o[i].size, idx->block_size);
    }
  put_column (b, col, n, 8);

  /* MD5 ETags as 16 bytes, then the lengths and bytes of the others. */
  for (i = 0; i < n; i++)
    {
      const char *e = o[i].etag;
      enum etag_kind kind = etag_kind (e);
      unsigned char md5[16];

      if (kind == ETAG_STRING)
        {
          col[nstr++] = strlen (e);
          continue;
        }
      if (kind == ETAG_MD5_QUOTED)
        e++;
      for (int k = 0; k < 16; k++)
        md5[k]
            = (unsigned char)((hexval (e[2 * k]) << 4) | hexval (e[2 * k + 1]));
      strbuf_add (b, md5, sizeof md5);
    }
  put_column (b, col, nstr, 2);
  for (i = 0; i < n; i++)
    if (etag_kind (o[i].etag) == ETAG_STRING)
      strbuf_adds (b, o[i].etag);
}

static void
encode_runs (const struct s3bd_index *idx, struct strbuf *b, uint64_t *col)
{
  const struct index_meta_run *r = idx->runs;
  size_t n = idx->nruns, i;
  uint64_t cursor = 0;

  for (i = 0; i < n; i++)
    {
      col[i] = r[i].block - cursor; /* >= 0: check_runs */
      cursor = r[i].block + r[i].count;
    }
  put_column (b, col, n, 8);
  for (i = 0; i < n; i++)
    col[i] = r[i].count;
  put_column (b, col, n, 4);
  for (i = 0; i < n; i++)
    col[i] = r[i].first;
  put_column (b, col, n, 4);
  for (i = 0; i < n; i++)
    col[i] = r[i].repeated;
  put_column (b, col, n, 1);
}

static void
encode_left (const struct s3bd_index *idx, struct strbuf *b, uint64_t *col,
             const char **keys)
{
  const struct index_leftout *l = idx->left;
  size_t n = idx->nleft, i;

  for (i = 0; i < n; i++)
    keys[i] = l[i].key;
  put_keys (b, keys, n, col);
  for (i = 0; i < n; i++)
    col[i] = l[i].bucket;
  put_column (b, col, n, 4);
  for (i = 0; i < n; i++)
    col[i] = l[i].reason;
  put_column (b, col, n, 4);
}

static void
encode_records (const struct s3bd_index *idx, struct strbuf *b, uint64_t *col)
{
  const struct index_record *r = idx->records;
  size_t n = idx->nrecords, i, ninline = 0;

  for (i = 0; i < n; i++)
    col[i] = r[i].first;
  put_column (b, col, n, 1);
  for (i = 0; i < n; i++)
    col[i] = r[i].object;
  put_column (b, col, n, 8);
  for (i = 0; i < n; i++)
    if (r[i].object == INDEX_RECORD_INLINE)
      col[ninline++] = r[i].len;
  put_column (b, col, ninline, 4);
  for (i = 0; i < n; i++)
    if (r[i].object == INDEX_RECORD_INLINE)
      strbuf_add (b, r[i].text, r[i].len);
}

static int
compress_section (ZSTD_CCtx *cctx, int type, const void *raw, size_t rawlen,
                  struct section_out *out, struct s3bd_error *err)
{
  size_t cap = ZSTD_compressBound (rawlen), r;

  if (ZSTD_isError (cap))
    return s3bd_fail (err, S3BD_ENOMEM, "index section %s: too large",
                      index_section_names[type]);
  out->data = malloc (cap);
  if (out->data == NULL)
    return oom (err);
  r = ZSTD_compress2 (cctx, out->data, cap, raw, rawlen);
  if (ZSTD_isError (r))
    return s3bd_fail (err, S3BD_EINVAL, "index section %s: zstd: %s",
                      index_section_names[type], ZSTD_getErrorName (r));
  out->stored = r;
  out->raw = rawlen;
  out->crc = crc (out->data, r);
  return 0;
}

static void
put_header (unsigned char *h, const struct s3bd_index *idx,
            const struct section_out *sec)
{
  uint32_t v = index_version_for (idx), hsize = header_size (v);
  uint64_t off = hsize;

  memset (h, 0, hsize);
  memcpy (h, index_magic, sizeof index_magic);
  put32 (h + 8, v);
  put32 (h + 12, hsize);
  put32 (h + 16, idx->block_size);
  put32 (h + 20, (uint32_t)idx->source_kind);
  put64 (h + 24, idx->device_blocks);
  put64 (h + 32, idx->data_start);
  put32 (h + 40, idx->shard_index);
  put32 (h + 44, idx->shard_count);
  put64 (h + 48, (uint64_t)idx->created);
  put32 (h + 56, idx->nbuckets);
  put32 (h + 60, (uint32_t)nsections (v));
  put64 (h + 64, idx->nobjects);
  put64 (h + 72, idx->nruns);
  put64 (h + 80, idx->ncontent);
  put64 (h + 88, idx->nleft);
  if (v >= 2)
    put64 (h + NRECORDS_OFFSET, idx->nrecords);
  for (int t = 1; t <= nsections (v); t++)
    {
      unsigned char *e = h + TABLE_OFFSET + (t - 1) * ENTRY_SIZE;

      put32 (e, (uint32_t)t);
      put32 (e + 4, sec[t].crc);
      put64 (e + 8, off);
      put64 (e + 16, sec[t].stored);
      put64 (e + 24, sec[t].raw);
      off += sec[t].stored;
    }
  put32 (h + hsize - 4, crc (h, hsize - 4));
}

int
index_encode (const struct s3bd_index *idx, void **buf, size_t *len,
              struct s3bd_error *err)
{
  struct section_out sec[NSECTIONS + 1];
  struct strbuf b = STRBUF_INIT;
  ZSTD_CCtx *cctx = NULL;
  uint64_t *col = NULL, most;
  const char **keys = NULL;
  unsigned char *out = NULL;
  uint32_t v = index_version_for (idx);
  size_t total = header_size (v);
  int r = -1;

  *buf = NULL;
  *len = 0;
  memset (sec, 0, sizeof sec);
  if (index_check (idx, err) == -1)
    return -1;

  /* One scratch column, and key pointers, for the longest section. */
  most = idx->nobjects > idx->nleft ? idx->nobjects : idx->nleft;
  most = most > idx->nruns ? most : idx->nruns;
  most = most > idx->nrecords ? most : idx->nrecords;
  if (most > SIZE_MAX / sizeof *col)
    return oom (err);
  col = malloc ((most ? most : 1) * sizeof *col);
  keys = malloc ((most ? most : 1) * sizeof *keys);

  /* Fixed parameters, no zstd checksum (the CRC covers the frame), the
   * content size in the frame header (decode checks it): the same input
   * gives the same bytes with a given libzstd.
   */
  cctx = ZSTD_createCCtx ();
  if (col == NULL || keys == NULL || cctx == NULL
      || ZSTD_isError (
          ZSTD_CCtx_setParameter (cctx, ZSTD_c_compressionLevel, ZSTD_LEVEL))
      || ZSTD_isError (ZSTD_CCtx_setParameter (cctx, ZSTD_c_contentSizeFlag, 1))
      || ZSTD_isError (ZSTD_CCtx_setParameter (cctx, ZSTD_c_checksumFlag, 0))
      || ZSTD_isError (ZSTD_CCtx_setParameter (cctx, ZSTD_c_dictIDFlag, 0)))
    {
      oom (err);
      goto out;
    }

  for (int t = 1; t <= nsections (v); t++)
    {
      const void *raw = "";
      size_t rawlen = 0;

      switch ((enum section_type)t)
        {
        case SEC_SOURCE: encode_source (idx, &b); break;
        case SEC_OBJECTS: encode_objects (idx, &b, col, keys); break;
        case SEC_META_RUNS: encode_runs (idx, &b, col); break;
        case SEC_META_CONTENT:
          /* Stored as it is; check_runs bounded the product. */
          raw = idx->content ? (const void *)idx->content : "";
          rawlen = idx->ncontent * idx->block_size;
          break;
        case SEC_LEFTOUT: encode_left (idx, &b, col, keys); break;
        case SEC_RECORDS: encode_records (idx, &b, col); break;
        }
      if (!strbuf_ok (&b))
        {
          oom (err);
          goto out;
        }
      if (b.s)
        {
          raw = b.s;
          rawlen = b.len;
        }
      if (compress_section (cctx, t, raw, rawlen, &sec[t], err) == -1)
        goto out;
      strbuf_free (&b);
      if (sec[t].stored > SIZE_MAX - total)
        {
          oom (err);
          goto out;
        }
      total += sec[t].stored;
    }

  out = malloc (total);
  if (out == NULL)
    {
      oom (err);
      goto out;
    }
  put_header (out, idx, sec);
  total = header_size (v);
  for (int t = 1; t <= nsections (v); t++)
    {
      memcpy (out + total, sec[t].data, sec[t].stored);
      total += sec[t].stored;
    }
  *buf = out;
  *len = total;
  r = 0;

out:
  for (int t = 1; t <= NSECTIONS; t++)
    free (sec[t].data);
  strbuf_free (&b);
  ZSTD_freeCCtx (cctx);
  free (col);
  free (keys);
  return r;
}
