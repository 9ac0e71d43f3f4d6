/* s3bd: decoding an index: a buffer in the format of docs/index-format.md
 * into a struct s3bd_index, trusting nothing (the checks are in the order
 * the essay atop index.c gives), and index_free.
 *
 * A decoded index points into a struct store hung on idx->priv; only
 * index_free releases it.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "s3bd/error.h"
#include "s3bd/index.h"

#include "indexint.h"

/* Fixed bytes per record: shared, suffix, kind, bucket, size, mtime,
 * mtime_nsec, gap for an object; gap, count, first, repeated for a run;
 * shared, suffix, bucket, reason for a left-out key.
 */
#define OBJECT_FIXED (2 + 2 + 1 + 4 + 8 + 8 + 4 + 8)
#define RUN_SIZE (8 + 4 + 4 + 1)
#define LEFT_FIXED (2 + 2 + 4 + 4)
/* first, object: a record takes at least 9 bytes. */
#define RECORD_FIXED (1 + 8)

/* A zstd block produces at most 128 KiB and takes at least 4 bytes (a
 * 3-byte header and one byte of content), so no frame expands more than
 * 32768 times.  A raw length beyond that is a lie, refused before it
 * sizes an allocation.
 */
#define MAX_ZSTD_RATIO 32768

struct store
{
  char *source; /* prefix and bucket names */
  const char **buckets;
  struct index_object *objects;
  char *object_keys;
  char *etags;
  struct index_meta_run *runs;
  unsigned char *content;
  struct index_leftout *left;
  char *left_keys;
  struct index_record *records;
  unsigned char *record_text; /* the RECORDS section's raw bytes */
};

/* ---- Little-endian fields and byte-plane columns ---- */

static uint32_t
get32 (const unsigned char *p)
{
  uint32_t v = 0;

  for (int i = 0; i < 4; i++)
    v |= (uint32_t)p[i] << (8 * i);
  return v;
}

static uint64_t
get64 (const unsigned char *p)
{
  uint64_t v = 0;

  for (int i = 0; i < 8; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* Byte k of value i of an n-value column is at col[k * n + i]. */
static uint64_t
column_get (const unsigned char *col, size_t n, unsigned width, size_t i)
{
  uint64_t v = 0;

  for (unsigned k = 0; k < width; k++)
    v |= (uint64_t)col[k * n + i] << (8 * k);
  return v;
}

static uint64_t
unzigzag (uint64_t z)
{
  return (z >> 1) ^ (0 - (z & 1));
}

/* Two's complement without relying on implementation-defined casts. */
static int64_t
to_i64 (uint64_t u)
{
  return u <= INT64_MAX ? (int64_t)u : -(int64_t)(UINT64_MAX - u) - 1;
}

/* ---- Decoding ---- */

static int section_fail (struct s3bd_error *err, int type, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

static int
section_fail (struct s3bd_error *err, int type, const char *fmt, ...)
{
  char msg[512];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  return s3bd_fail (err, S3BD_EINVAL, "index section %s: %s",
                    index_section_names[type], msg);
}

static int
parse_source (const unsigned char *raw, size_t len, struct s3bd_index *idx,
              struct store *st, struct s3bd_error *err)
{
  size_t pos = 0, out = 0;

  /* Every string takes at least its 4-byte length. */
  if (idx->nbuckets > len / 4)
    return section_fail (err, SEC_SOURCE,
                         "%" PRIu32 " buckets cannot fit in %zu bytes",
                         idx->nbuckets, len);
  st->source = malloc (len + 1);
  st->buckets = calloc ((size_t)idx->nbuckets + 1, sizeof *st->buckets);
  if (st->source == NULL || st->buckets == NULL)
    return oom (err);
  for (uint32_t i = 0; i <= idx->nbuckets; i++)
    {
      size_t n;

      if (len - pos < 4)
        return section_fail (err, SEC_SOURCE, "truncated");
      n = get32 (raw + pos);
      pos += 4;
      if (n > len - pos)
        return section_fail (err, SEC_SOURCE, "truncated");
      if (memchr (raw + pos, '\0', n))
        return section_fail (err, SEC_SOURCE, "NUL byte in a name");
      memcpy (st->source + out, raw + pos, n);
      st->source[out + n] = '\0';
      if (i == 0)
        idx->prefix = st->source + out;
      else
        st->buckets[i - 1] = st->source + out;
      out += n + 1;
      pos += n;
    }
  if (pos != len)
    return section_fail (err, SEC_SOURCE, "%zu bytes left over", len - pos);
  idx->buckets = st->buckets;
  return 0;
}

/* A front-coded key list at raw + *pos (see put_keys).  Rebuilds the n
 * keys one after another, NUL-terminated, in a new *arena, and moves
 * *pos past the list.
 */
static int
parse_keys (int type, const unsigned char *raw, size_t len, size_t *pos,
            size_t n, char **arena, struct s3bd_error *err)
{
  const unsigned char *c_shared = raw + *pos, *c_suffix, *bytes;
  uint64_t prevlen = 0, suffixes = 0, total = 0;
  char *s, *prev;
  size_t i;

  if ((len - *pos) / 4 < n)
    return section_fail (err, type, "truncated");
  c_suffix = c_shared + 2 * n;
  bytes = c_suffix + 2 * n;
  for (i = 0; i < n; i++)
    {
      uint64_t shared = column_get (c_shared, n, 2, i);
      uint64_t klen = shared + column_get (c_suffix, n, 2, i);

      if (shared > prevlen)
        return section_fail (err, type,
                             "key %zu shares %" PRIu64
                             " bytes with a key of %" PRIu64,
                             i, shared, prevlen);
      if (klen == 0 || klen > MAX_KEY)
        return section_fail (err, type, "key %zu is %" PRIu64 " bytes long", i,
                             klen);
      suffixes += klen - shared;
      total += klen + 1;
      prevlen = klen;
    }
  if (suffixes > len - *pos - 4 * n)
    return section_fail (err, type, "truncated");
  if (memchr (bytes, '\0', suffixes))
    return section_fail (err, type, "NUL byte in a key");
  if (total > SIZE_MAX) /* at most 1025 * n */
    return oom (err);
  *arena = s = malloc (total ? total : 1);
  if (s == NULL)
    return oom (err);
  prev = s;
  for (i = 0; i < n; i++)
    {
      size_t shared = column_get (c_shared, n, 2, i);
      size_t suffix = column_get (c_suffix, n, 2, i);

      memmove (s, prev, shared);
      memcpy (s + shared, bytes, suffix);
      s[shared + suffix] = '\0';
      bytes += suffix;
      prev = s;
      s += shared + suffix + 1;
    }
  *pos += 4 * n + suffixes;
  return 0;
}

static int
parse_objects (const unsigned char *raw, size_t len, struct s3bd_index *idx,
               struct store *st, struct s3bd_error *err)
{
  const unsigned char *c_kind, *c_bucket, *c_size, *c_mtime, *c_nsec, *c_gap,
      *md5, *c_elen, *etags;
  size_t n, nmd5 = 0, nstr = 0, pos = 0, i, j;
  uint64_t etag_total = 0, arena, cursor = idx->data_start, mtime = 0;
  const char *key;
  char *s;

  if (idx->nobjects > len / OBJECT_FIXED)
    return section_fail (err, SEC_OBJECTS,
                         "%" PRIu64 " objects cannot fit in %zu bytes",
                         idx->nobjects, len);
  n = idx->nobjects;
  if (parse_keys (SEC_OBJECTS, raw, len, &pos, n, &st->object_keys, err) == -1)
    return -1;
  if ((len - pos) / (OBJECT_FIXED - 4) < n)
    return section_fail (err, SEC_OBJECTS, "truncated");
  c_kind = raw + pos;
  c_bucket = c_kind + n;
  c_size = c_bucket + 4 * n;
  c_mtime = c_size + 8 * n;
  c_nsec = c_mtime + 8 * n;
  c_gap = c_nsec + 4 * n;
  pos += (OBJECT_FIXED - 4) * n;

  for (i = 0; i < n; i++)
    switch (c_kind[i])
      {
      case ETAG_STRING: nstr++; break;
      case ETAG_MD5_QUOTED:
      case ETAG_MD5_BARE: nmd5++; break;
      default:
        return section_fail (err, SEC_OBJECTS,
                             "object %zu: unknown ETag encoding %u", i,
                             c_kind[i]);
      }
  if ((len - pos) / 16 < nmd5)
    return section_fail (err, SEC_OBJECTS, "truncated");
  md5 = raw + pos;
  pos += 16 * nmd5;
  if ((len - pos) / 2 < nstr)
    return section_fail (err, SEC_OBJECTS, "truncated");
  c_elen = raw + pos;
  pos += 2 * nstr;
  for (j = 0; j < nstr; j++)
    {
      uint64_t el = column_get (c_elen, nstr, 2, j);

      if (el > MAX_ETAG)
        return section_fail (err, SEC_OBJECTS, "ETag of %" PRIu64 " bytes", el);
      etag_total += el;
    }
  if (etag_total != len - pos)
    return section_fail (err, SEC_OBJECTS,
                         "%zu bytes of ETags where %" PRIu64 " were expected",
                         len - pos, etag_total);
  etags = raw + pos;
  if (memchr (etags, '\0', etag_total))
    return section_fail (err, SEC_OBJECTS, "NUL byte in an ETag");

  /* 35 bytes per MD5 ETag, at most 1025 per other: n <= len / 37. */
  arena = 35 * (uint64_t)nmd5 + etag_total + nstr;
  if (arena > SIZE_MAX)
    return oom (err);
  st->objects = calloc (n ? n : 1, sizeof *st->objects);
  st->etags = malloc (arena ? arena : 1);
  if (st->objects == NULL || st->etags == NULL)
    return oom (err);

  key = st->object_keys;
  s = st->etags;
  for (i = 0, j = 0; i < n; i++)
    {
      struct index_object *o = &st->objects[i];
      uint64_t gap, nb;

      o->key = key;
      key += strlen (key) + 1;
      o->etag = s;
      if (c_kind[i] == ETAG_STRING)
        {
          size_t el = column_get (c_elen, nstr, 2, j++);

          memcpy (s, etags, el);
          etags += el;
          s += el;
        }
      else
        {
          static const char hex[] = "0123456789abcdef";

          if (c_kind[i] == ETAG_MD5_QUOTED)
            *s++ = '"';
          for (int k = 0; k < 16; k++)
            {
              *s++ = hex[md5[k] >> 4];
              *s++ = hex[md5[k] & 15];
            }
          md5 += 16;
          if (c_kind[i] == ETAG_MD5_QUOTED)
            *s++ = '"';
        }
      *s++ = '\0';

      o->bucket = (uint32_t)column_get (c_bucket, n, 4, i);
      o->size = column_get (c_size, n, 8, i);
      mtime += unzigzag (column_get (c_mtime, n, 8, i));
      o->mtime = to_i64 (mtime);
      o->mtime_nsec = (uint32_t)column_get (c_nsec, n, 4, i);
      gap = column_get (c_gap, n, 8, i);
      nb = object_blocks (o->size, idx->block_size);
      if (gap > UINT64_MAX - cursor || nb > UINT64_MAX - (cursor + gap))
        return section_fail (err, SEC_OBJECTS,
                             "object %zu (%s): block numbers overflow", i,
                             o->key);
      o->first_block = cursor + gap;
      cursor = o->first_block + nb;
    }
  idx->objects = st->objects;
  return 0;
}

static int
parse_runs (const unsigned char *raw, size_t len, struct s3bd_index *idx,
            struct store *st, struct s3bd_error *err)
{
  size_t n;
  uint64_t cursor = 0;

  if (idx->nruns > len / RUN_SIZE || idx->nruns * RUN_SIZE != len)
    return section_fail (err, SEC_META_RUNS, "%zu bytes for %" PRIu64 " runs",
                         len, idx->nruns);
  n = idx->nruns;
  st->runs = calloc (n ? n : 1, sizeof *st->runs);
  if (st->runs == NULL)
    return oom (err);
  for (size_t i = 0; i < n; i++)
    {
      struct index_meta_run *r = &st->runs[i];
      uint64_t gap = column_get (raw, n, 8, i);
      uint64_t flag = column_get (raw + 16 * n, n, 1, i);

      r->count = (uint32_t)column_get (raw + 8 * n, n, 4, i);
      r->first = (uint32_t)column_get (raw + 12 * n, n, 4, i);
      if (flag > 1)
        return section_fail (err, SEC_META_RUNS, "run %zu: bad flag %" PRIu64,
                             i, flag);
      r->repeated = flag;
      if (gap > UINT64_MAX - cursor || r->count > UINT64_MAX - cursor - gap)
        return section_fail (err, SEC_META_RUNS,
                             "run %zu: block numbers overflow", i);
      r->block = cursor + gap;
      cursor = r->block + r->count;
    }
  idx->runs = st->runs;
  return 0;
}

static int
parse_left (const unsigned char *raw, size_t len, struct s3bd_index *idx,
            struct store *st, struct s3bd_error *err)
{
  size_t n, pos = 0;
  const char *key;

  if (idx->nleft > len / LEFT_FIXED)
    return section_fail (err, SEC_LEFTOUT,
                         "%" PRIu64 " keys cannot fit in %zu bytes", idx->nleft,
                         len);
  n = idx->nleft;
  if (parse_keys (SEC_LEFTOUT, raw, len, &pos, n, &st->left_keys, err) == -1)
    return -1;
  if (len - pos != (LEFT_FIXED - 4) * n)
    return section_fail (err, SEC_LEFTOUT,
                         "%zu bytes of buckets and reasons for %zu keys",
                         len - pos, n);
  st->left = calloc (n ? n : 1, sizeof *st->left);
  if (st->left == NULL)
    return oom (err);
  key = st->left_keys;
  for (size_t i = 0; i < n; i++)
    {
      st->left[i].key = key;
      key += strlen (key) + 1;
      st->left[i].bucket = (uint32_t)column_get (raw + pos, n, 4, i);
      st->left[i].reason = (uint32_t)column_get (raw + pos + 4 * n, n, 4, i);
    }
  idx->left = st->left;
  return 0;
}

/* Keeps raw (the texts point into it) in st->record_text. */
static int
parse_records (unsigned char *raw, size_t len, struct s3bd_index *idx,
               struct store *st, struct s3bd_error *err)
{
  size_t n, pos, ninline = 0, k = 0;
  uint64_t text_len = 0;

  if (idx->nrecords > len / RECORD_FIXED)
    return section_fail (err, SEC_RECORDS,
                         "%" PRIu64 " records cannot fit in %zu bytes",
                         idx->nrecords, len);
  n = idx->nrecords;
  for (size_t i = 0; i < n; i++)
    if (column_get (raw + n, n, 8, i) == INDEX_RECORD_INLINE)
      ninline++;
  pos = RECORD_FIXED * n;
  if (ninline > (len - pos) / 4)
    return section_fail (err, SEC_RECORDS, "truncated");
  for (size_t j = 0; j < ninline; j++)
    text_len += column_get (raw + pos, ninline, 4, j);
  pos += 4 * ninline;
  if (text_len != len - pos)
    return section_fail (err, SEC_RECORDS,
                         "%zu bytes of values where the lengths say %" PRIu64,
                         len - pos, text_len);
  st->records = calloc (n ? n : 1, sizeof *st->records);
  if (st->records == NULL)
    return oom (err);
  st->record_text = raw;
  for (size_t i = 0; i < n; i++)
    {
      struct index_record *r = &st->records[i];
      uint64_t first = column_get (raw, n, 1, i);

      if (first > 1)
        return section_fail (err, SEC_RECORDS, "record %zu: bad flag %" PRIu64,
                             i, first);
      r->first = first;
      r->object = column_get (raw + n, n, 8, i);
      if (r->object != INDEX_RECORD_INLINE)
        continue;
      r->len = (uint32_t)column_get (raw + RECORD_FIXED * n, ninline, 4, k++);
      r->text = (const char *)raw + pos;
      pos += r->len;
    }
  idx->records = st->records;
  return 0;
}

/* Checks a section's CRC and zstd frame; returns its raw bytes. */
static int
inflate_section (ZSTD_DCtx *dctx, const unsigned char *buf, int type,
                 const unsigned char *entry, unsigned char **raw,
                 size_t *rawlen, struct s3bd_error *err)
{
  uint64_t off = get64 (entry + 8), stored = get64 (entry + 16);
  uint64_t rl = get64 (entry + 24);
  const unsigned char *src = buf + off;
  unsigned long long fcs;
  size_t r;

  if (crc (src, stored) != get32 (entry + 4))
    return section_fail (err, type, "checksum mismatch (corrupt index)");
  if (rl > SIZE_MAX || rl / MAX_ZSTD_RATIO > stored)
    return section_fail (err, type,
                         "raw length %" PRIu64 " impossible for %" PRIu64
                         " stored bytes",
                         rl, stored);
  r = ZSTD_findFrameCompressedSize (src, stored);
  if (ZSTD_isError (r) || r != stored)
    return section_fail (err, type, "not one zstd frame");
  fcs = ZSTD_getFrameContentSize (src, stored);
  if (fcs != rl)
    return section_fail (
        err, type, "zstd frame size differs from the raw length %" PRIu64, rl);
  *raw = malloc (rl ? rl : 1);
  if (*raw == NULL)
    return oom (err);
  r = ZSTD_decompressDCtx (dctx, *raw, rl, src, stored);
  if (ZSTD_isError (r) || r != rl)
    return section_fail (err, type, "zstd: %s",
                         ZSTD_isError (r) ? ZSTD_getErrorName (r)
                                          : "short frame");
  *rawlen = rl;
  return 0;
}

int
index_decode (const void *buf, size_t len, struct s3bd_index *idx,
              struct s3bd_error *err)
{
  const unsigned char *h = buf;
  struct store *st;
  ZSTD_DCtx *dctx = NULL;
  unsigned char *raw = NULL;
  size_t rawlen = 0;
  uint64_t end;
  uint32_t v, hsize;
  int nsec;

  memset (idx, 0, sizeof *idx);
  if (len < sizeof index_magic
      || memcmp (h, index_magic, sizeof index_magic) != 0)
    return s3bd_fail (err, S3BD_EINVAL, "not an s3bd index (%s)",
                      len < sizeof index_magic ? "too short" : "bad magic");
  if (len < 12)
    return s3bd_fail (err, S3BD_EINVAL, "index truncated in its header");
  v = get32 (h + 8);
  if (v > S3BD_INDEX_VERSION)
    return s3bd_fail (err, S3BD_EINVAL,
                      "index version %" PRIu32
                      " is newer than this s3bd supports (%d)",
                      v, S3BD_INDEX_VERSION);
  if (v == 0)
    return s3bd_fail (err, S3BD_EINVAL, "index version %" PRIu32 " is invalid",
                      v);
  hsize = header_size (v);
  nsec = nsections (v);
  if (len < hsize)
    return s3bd_fail (
        err, S3BD_EINVAL,
        "index truncated in its header (%zu of %" PRIu32 " bytes)", len, hsize);
  if (crc (h, hsize - 4) != get32 (h + hsize - 4))
    return s3bd_fail (err, S3BD_EINVAL,
                      "index header: checksum mismatch (corrupt index)");
  if (get32 (h + 12) != hsize || get32 (h + 60) != (uint32_t)nsec
      || get32 (h + hsize - 8) != 0)
    return s3bd_fail (err, S3BD_EINVAL,
                      "index header: bad header size, section count or "
                      "reserved field");

  idx->block_size = get32 (h + 16);
  idx->source_kind = (enum index_source_kind)get32 (h + 20);
  idx->device_blocks = get64 (h + 24);
  idx->data_start = get64 (h + 32);
  idx->shard_index = get32 (h + 40);
  idx->shard_count = get32 (h + 44);
  idx->created = to_i64 (get64 (h + 48));
  idx->nbuckets = get32 (h + 56);
  idx->nobjects = get64 (h + 64);
  idx->nruns = get64 (h + 72);
  idx->ncontent = get64 (h + 80);
  idx->nleft = get64 (h + 88);
  idx->nrecords = v >= 2 ? get64 (h + NRECORDS_OFFSET) : 0;
  if (index_check_header (idx, err) == -1)
    {
      memset (idx, 0, sizeof *idx);
      return -1;
    }

  /* The sections follow the header in order, back to back, to the end. */
  end = hsize;
  for (int t = 1; t <= nsec; t++)
    {
      const unsigned char *e = h + TABLE_OFFSET + (t - 1) * ENTRY_SIZE;
      uint64_t stored = get64 (e + 16);

      if (get32 (e) != (uint32_t)t || get64 (e + 8) != end)
        {
          memset (idx, 0, sizeof *idx);
          return s3bd_fail (err, S3BD_EINVAL,
                            "index header: section table entry %d is not %s "
                            "at offset %" PRIu64,
                            t, index_section_names[t], end);
        }
      if (stored > len - end)
        {
          memset (idx, 0, sizeof *idx);
          return s3bd_fail (
              err, S3BD_EINVAL,
              "index truncated (%zu bytes): section %s needs %" PRIu64
              " bytes at offset %" PRIu64,
              len, index_section_names[t], stored, end);
        }
      end += stored;
    }
  if (end != len)
    {
      memset (idx, 0, sizeof *idx);
      return s3bd_fail (err, S3BD_EINVAL,
                        "index: %" PRIu64 " stray bytes after the last "
                        "section",
                        len - end);
    }

  st = calloc (1, sizeof *st);
  dctx = ZSTD_createDCtx ();
  if (st == NULL || dctx == NULL)
    {
      free (st);
      ZSTD_freeDCtx (dctx);
      memset (idx, 0, sizeof *idx);
      return oom (err);
    }
  idx->priv = st;

  for (int t = 1; t <= nsec; t++)
    {
      const unsigned char *e = h + TABLE_OFFSET + (t - 1) * ENTRY_SIZE;
      int r;

      if (inflate_section (dctx, h, t, e, &raw, &rawlen, err) == -1)
        goto fail;
      switch (t)
        {
        case SEC_SOURCE: r = parse_source (raw, rawlen, idx, st, err); break;
        case SEC_OBJECTS: r = parse_objects (raw, rawlen, idx, st, err); break;
        case SEC_META_RUNS: r = parse_runs (raw, rawlen, idx, st, err); break;
        case SEC_META_CONTENT:
          if (idx->ncontent > rawlen / idx->block_size
              || idx->ncontent * idx->block_size != rawlen)
            {
              r = section_fail (err, t,
                                "%zu bytes for %" PRIu64 " blocks of %" PRIu32,
                                rawlen, idx->ncontent, idx->block_size);
              break;
            }
          idx->content = st->content = raw; /* kept, not copied */
          raw = NULL;
          r = 0;
          break;
        case SEC_LEFTOUT: r = parse_left (raw, rawlen, idx, st, err); break;
        default:
          r = parse_records (raw, rawlen, idx, st, err);
          if (st->record_text == raw)
            raw = NULL; /* kept: the values point into it */
          break;
        }
      free (raw);
      raw = NULL;
      if (r == -1)
        goto fail;
    }
  ZSTD_freeDCtx (dctx);
  dctx = NULL;

  if (index_check (idx, err) == -1)
    goto fail;
  return 0;

fail:
  free (raw);
  ZSTD_freeDCtx (dctx);
  index_free (idx);
  return -1;
}

void
index_free (struct s3bd_index *idx)
{
  struct store *st;

  if (idx == NULL || idx->priv == NULL)
    return;
  st = idx->priv;
  free (st->source);
  free (st->buckets);
  free (st->objects);
  free (st->object_keys);
  free (st->etags);
  free (st->runs);
  free (st->content);
  free (st->left);
  free (st->left_keys);
  free (st->records);
  free (st->record_text);
  free (st);
  memset (idx, 0, sizeof *idx);
}
