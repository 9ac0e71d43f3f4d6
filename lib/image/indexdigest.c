/* s3bd: the digest of what an index serves.  See index_digest in
 * include/s3bd/index.h.
 *
 * Every field goes in at a fixed width, little-endian, and every string
 * with its length first, so that no two different indexes feed the hash
 * the same bytes.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "s3bd/index.h"

static void
put_u64 (EVP_MD_CTX *ctx, uint64_t v)
{
  unsigned char b[8];

  for (int i = 0; i < 8; i++)
    b[i] = (unsigned char)(v >> (8 * i));
  EVP_DigestUpdate (ctx, b, sizeof b);
}

static void
put_str (EVP_MD_CTX *ctx, const char *s)
{
  size_t n = strlen (s);

  put_u64 (ctx, n);
  EVP_DigestUpdate (ctx, s, n);
}

void
index_digest (const struct s3bd_index *idx, unsigned char out[S3BD_DIGEST_LEN])
{
  static const char tag[] = "s3bd image digest 1";
  EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
  unsigned len = 0;

  /* Only allocation can fail here; without a digest nothing is safe. */
  if (ctx == NULL || EVP_DigestInit_ex (ctx, EVP_sha256 (), NULL) != 1)
    abort ();
  EVP_DigestUpdate (ctx, tag, sizeof tag);
  put_u64 (ctx, idx->block_size);
  put_u64 (ctx, idx->device_blocks);
  put_u64 (ctx, idx->nbuckets);
  for (uint32_t b = 0; b < idx->nbuckets; b++)
    put_str (ctx, idx->buckets[b]);
  put_u64 (ctx, idx->nobjects);
  for (uint64_t i = 0; i < idx->nobjects; i++)
    {
      const struct index_object *o = &idx->objects[i];

      put_u64 (ctx, o->bucket);
      put_str (ctx, o->key);
      put_str (ctx, o->etag);
      put_u64 (ctx, o->size);
      put_u64 (ctx, o->first_block);
    }
  put_u64 (ctx, idx->nruns);
  for (uint64_t i = 0; i < idx->nruns; i++)
    {
      const struct index_meta_run *r = &idx->runs[i];

      put_u64 (ctx, r->block);
      put_u64 (ctx, r->count);
      put_u64 (ctx, r->first);
      put_u64 (ctx, r->repeated);
    }
  put_u64 (ctx, idx->ncontent);
  EVP_DigestUpdate (ctx, idx->content, idx->ncontent * idx->block_size);
  EVP_DigestFinal_ex (ctx, out, &len);
  assert (len == S3BD_DIGEST_LEN);
  EVP_MD_CTX_free (ctx);
}
