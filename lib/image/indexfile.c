/* s3bd: index files and look-up.  index_write_file replaces a file
 * atomically (a temporary file, fsync, rename, fsync of the directory);
 * index_read_file reads and decodes one; index_lookup says what a block
 * of the device holds.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "s3bd/error.h"
#include "s3bd/index.h"
#include "s3bd/s3.h"

#include "common/file.h"
#include "indexint.h"

/* ---- Files ---- */

int
index_write_encoded (const void *buf, size_t len, const char *path,
                     struct s3bd_error *err)
{
  /* An index is shared with readers. */
  return file_replace ("index", path, buf, len, 0644, err);
}

int
index_write_file (const struct s3bd_index *idx, const char *path,
                  struct s3bd_error *err)
{
  void *buf;
  size_t len;
  int r;

  if (index_encode (idx, &buf, &len, err) == -1)
    {
      s3bd_error_prefix (err, "writing index %s", path);
      return -1;
    }
  r = index_write_encoded (buf, len, path, err);
  free (buf);
  return r;
}

int
index_read_file (const char *path, struct s3bd_index *idx,
                 struct s3bd_error *err)
{
  struct stat sb;
  unsigned char *buf;
  size_t len, got = 0;
  int fd, r;

  memset (idx, 0, sizeof *idx);
  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd == -1)
    return s3bd_fail (err, S3BD_EIO, "reading index %s: %s", path,
                      strerror (errno));
  if (fstat (fd, &sb) == -1)
    {
      r = s3bd_fail (err, S3BD_EIO, "reading index %s: %s", path,
                     strerror (errno));
      close (fd);
      return r;
    }
  if (!S_ISREG (sb.st_mode) || (uint64_t)sb.st_size > SIZE_MAX)
    {
      close (fd);
      return s3bd_fail (err, S3BD_EINVAL,
                        "reading index %s: not a regular file", path);
    }
  len = (size_t)sb.st_size;
  buf = malloc (len ? len : 1);
  if (buf == NULL)
    {
      close (fd);
      return oom (err);
    }
  while (got < len)
    {
      ssize_t n = read (fd, buf + got, len - got);

      if (n == -1 && errno == EINTR)
        continue;
      if (n <= 0)
        {
          r = s3bd_fail (err, S3BD_EIO, "reading index %s: %s", path,
                         n == 0 ? "file shrank while read" : strerror (errno));
          close (fd);
          free (buf);
          return r;
        }
      got += (size_t)n;
    }
  close (fd);
  r = index_decode (buf, len, idx, err);
  free (buf);
  if (r == -1)
    s3bd_error_prefix (err, "%s", path);
  return r;
}

/* ---- Look-up ---- */

int
index_lookup (const struct s3bd_index *idx, uint64_t block,
              struct index_lookup *out)
{
  uint64_t lo, hi, mid, next = idx->device_blocks;

  memset (out, 0, sizeof *out);
  if (block >= idx->device_blocks)
    return -1;

  /* lo = the first run that starts after block. */
  lo = 0;
  hi = idx->nruns;
  while (lo < hi)
    {
      mid = lo + (hi - lo) / 2;
      if (idx->runs[mid].block <= block)
        lo = mid + 1;
      else
        hi = mid;
    }
  if (lo > 0 && block - idx->runs[lo - 1].block < idx->runs[lo - 1].count)
    {
      const struct index_meta_run *r = &idx->runs[lo - 1];
      uint64_t off = block - r->block;
      uint64_t c = r->first + (r->repeated ? 0 : off);

      out->kind = INDEX_META;
      out->count = r->count - off;
      out->meta = idx->content + c * idx->block_size;
      return 0;
    }
  if (lo < idx->nruns)
    next = idx->runs[lo].block;

  /* lo = the first object that starts after block.  An empty object
   * sorts before a non-empty one at the same block, so lo - 1 is the
   * only object that can hold block.
   */
  lo = 0;
  hi = idx->nobjects;
  while (lo < hi)
    {
      mid = lo + (hi - lo) / 2;
      if (idx->objects[mid].first_block <= block)
        lo = mid + 1;
      else
        hi = mid;
    }
  if (lo > 0)
    {
      const struct index_object *o = &idx->objects[lo - 1];
      uint64_t nb = object_blocks (o->size, idx->block_size);

      if (block - o->first_block < nb)
        {
          out->kind = INDEX_DATA;
          out->object = lo - 1;
          out->object_block = block - o->first_block;
          out->count = nb - out->object_block;
          return 0;
        }
    }
  if (lo < idx->nobjects && idx->objects[lo].first_block < next)
    next = idx->objects[lo].first_block;

  out->kind = INDEX_HOLE;
  out->count = next - block;
  return 0;
}

int
index_load (struct s3_client *client, const char *where, struct s3bd_index *idx,
            struct s3bd_error *err)
{
  char *buf = NULL;
  size_t len;
  int r;

  if (strncmp (where, "s3://", 5) != 0)
    return index_read_file (where, idx, err);
  r = s3_read_object (client, where, &buf, &len, err) == 0
              && index_decode (buf, len, idx, err) == 0
          ? 0
          : -1;
  if (r == -1)
    s3bd_error_prefix (err, "index %s", where);
  free (buf);
  return r;
}
