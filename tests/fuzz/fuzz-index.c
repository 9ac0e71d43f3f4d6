/* s3bd: fuzzing the index decoder (lib/image/indexdecode.c), the checks it
 * runs (lib/image/index.c) and look-ups in what it accepts
 * (lib/image/indexfile.c).
 *
 * A CRC-32 covers the header and each section, so nearly every mutation
 * would stop at a checksum: the harness recomputes them over the mutated
 * bytes before decoding, so each mutation reaches the parsers while the
 * library keeps the one code path every build runs.  The seeds
 * (tests/fuzz/make-corpus) store their sections as raw zstd blocks, so a
 * mutated byte of a section is a mutated byte of what the section parser
 * reads.
 *
 * What the decoder accepts must be an index the encoder accepts too, and
 * re-encode to the same bytes after a second decode; every look-up must
 * agree with a linear search of the runs and objects.
 */
#include <stdbool.h>

#include "s3bd/error.h"
#include "s3bd/index.h"

#include "image/indexint.h"

#include "fuzz.h"

static uint64_t
get64 (const unsigned char *p)
{
  uint64_t v = 0;

  for (int i = 0; i < 8; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static void
put32 (unsigned char *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

/* The sections' CRCs where the table's offsets make sense, then the
 * header's, which covers the table.
 */
static void
fix_checksums (unsigned char *buf, size_t len)
{
  uint32_t version, hsize;

  if (len < 12)
    return;
  version = buf[8] == 1 && buf[9] == 0 && buf[10] == 0 && buf[11] == 0 ? 1 : 2;
  hsize = header_size (version);
  if (len < hsize)
    return;
  for (int t = 0; t < nsections (version); t++)
    {
      unsigned char *e = buf + TABLE_OFFSET + t * ENTRY_SIZE;
      uint64_t off = get64 (e + 8), stored = get64 (e + 16);

      if (off <= len && stored <= len - off)
        put32 (e + 4, crc (buf + off, stored));
    }
  put32 (buf + hsize - 4, crc (buf, hsize - 4));
}

/* What block holds, by a linear search: the oracle for index_lookup. */
static enum index_block_kind
kind_of (const struct s3bd_index *idx, uint64_t block, uint64_t *which)
{
  for (uint64_t i = 0; i < idx->nruns; i++)
    if (block >= idx->runs[i].block
        && block - idx->runs[i].block < idx->runs[i].count)
      {
        *which = i;
        return INDEX_META;
      }
  for (uint64_t i = 0; i < idx->nobjects; i++)
    {
      const struct index_object *o = &idx->objects[i];

      if (block >= o->first_block
          && block - o->first_block < object_blocks (o->size, idx->block_size))
        {
          *which = i;
          return INDEX_DATA;
        }
    }
  return INDEX_HOLE;
}

static void
check_lookup (const struct s3bd_index *idx, uint64_t block)
{
  struct index_lookup l;
  uint64_t which = 0;

  if (block >= idx->device_blocks)
    {
      FUZZ_CHECK (index_lookup (idx, block, &l) == -1);
      return;
    }
  FUZZ_CHECK (index_lookup (idx, block, &l) == 0);
  FUZZ_CHECK (l.count >= 1 && l.count <= idx->device_blocks - block);
  FUZZ_CHECK (l.kind == kind_of (idx, block, &which));
  if (l.kind == INDEX_META)
    {
      const struct index_meta_run *r = &idx->runs[which];
      uint64_t c = r->first + (r->repeated ? 0 : block - r->block);

      FUZZ_CHECK (c < idx->ncontent);
      FUZZ_CHECK (l.meta == idx->content + c * idx->block_size);
    }
  else if (l.kind == INDEX_DATA)
    FUZZ_CHECK (l.object == which
                && l.object_block == block - idx->objects[which].first_block);
}

/* Blocks worth asking about: the first ones, the last ones, and both
 * sides of every edge, for a bounded number of runs and objects.
 */
static void
check_lookups (const struct s3bd_index *idx)
{
  uint64_t n = idx->device_blocks;

  for (uint64_t b = 0; b < 64 && b <= n; b++)
    {
      check_lookup (idx, b);
      check_lookup (idx, n - b);
    }
  check_lookup (idx, UINT64_MAX);
  for (uint64_t i = 0; i < idx->nruns && i < 64; i++)
    {
      const struct index_meta_run *r = &idx->runs[i];

      check_lookup (idx, r->block);
      check_lookup (idx, r->block + r->count - 1);
      check_lookup (idx, r->block + r->count);
    }
  for (uint64_t i = 0; i < idx->nobjects && i < 64; i++)
    {
      const struct index_object *o = &idx->objects[i];
      uint64_t nb = object_blocks (o->size, idx->block_size);

      if (o->first_block > 0)
        check_lookup (idx, o->first_block - 1);
      check_lookup (idx, o->first_block);
      check_lookup (idx, o->first_block + nb);
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct s3bd_error err = { 0 };
  struct s3bd_index idx, again;
  unsigned char *buf = malloc (size ? size : 1);
  void *enc = NULL, *enc2 = NULL;
  size_t enclen = 0, enc2len = 0;

  if (buf == NULL)
    abort ();
  memcpy (buf, data, size);
  fix_checksums (buf, size);
  if (index_decode (buf, size, &idx, &err) == -1)
    {
      FUZZ_CHECK_ERROR (&err);
      FUZZ_CHECK (idx.priv == NULL && idx.objects == NULL);
      free (buf);
      return 0;
    }
  free (buf);
  check_lookups (&idx);

  /* What decodes, encodes; and what that decodes to encodes the same. */
  if (index_encode (&idx, &enc, &enclen, &err) == -1)
    {
      fprintf (stderr, "decoded, but index_encode refuses it: %s\n", err.msg);
      abort ();
    }
  FUZZ_CHECK (index_decode (enc, enclen, &again, &err) == 0);
  FUZZ_CHECK (index_encode (&again, &enc2, &enc2len, &err) == 0);
  FUZZ_CHECK (enclen == enc2len && memcmp (enc, enc2, enclen) == 0);
  index_free (&again);
  free (enc);
  free (enc2);
  index_free (&idx);
  return 0;
}
