/* s3bd: an in-memory block store and the libext2fs io_manager over it.
 *
 * The image builder never writes data blocks, only metadata, and much of
 * that repeats (full block bitmaps, empty inode bitmaps of groups with no
 * inodes): so the store keeps a map from 4 KiB page number to a content,
 * and each distinct content once, with a reference count.  An all-zero
 * page is not stored at all: unmapped pages read as zeros, which is what
 * a never-written inode table must read as.  A 20 TiB image with 163,840
 * block groups thus costs a few megabytes, not the 1.3 GB of bitmaps it
 * nominally holds.
 *
 * libext2fs addresses the channel in units of its current block size
 * (1 KiB until ext2fs_initialize sets 4 KiB) or, with a negative count, in
 * bytes; everything is turned into byte ranges over 4 KiB pages here.
 *
 * Why not unix_io on a sparse temporary file: a host file system caps
 * file size (16 TiB on ext4), and reading the metadata back would need
 * SEEK_DATA scans; this is simpler and never touches a disk.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ext2fs/ext2fs.h>

#include "common/hashmap.h"
#include "common/vector.h"
#include "s3bd/ext4.h"

#define PAGE EXT4_BLOCK_SIZE

struct content
{
  uint64_t hash;
  uint32_t refs; /* 0: free slot */
  uint32_t export_id;
  unsigned char *data;
};

DEFINE_VECTOR (content_vector, struct content);
DEFINE_VECTOR (id_vector, uint32_t);

struct memstore
{
  struct hashmap pages;           /* page number -> content id */
  struct content_vector contents; /* [0] unused: content 0 means none */
  struct id_vector free_ids;      /* contents whose refs fell to 0 */
  struct hashmap by_hash;         /* page_hash (data) -> content id */
  char name[64];
  int failed; /* ENOMEM seen */
};

static uint64_t
page_hash (const unsigned char *p)
{
  uint64_t h = 0x9E3779B97F4A7C15ULL;

  for (size_t i = 0; i < PAGE; i += 8)
    {
      uint64_t w;

      memcpy (&w, p + i, 8);
      h = (h ^ w) * 0xff51afd7ed558ccdULL;
      h ^= h >> 32;
    }
  return h;
}

static bool
all_zero (const unsigned char *p)
{
  static const unsigned char zero[PAGE];

  return memcmp (p, zero, PAGE) == 0;
}

struct memstore *
memstore_new (void)
{
  struct memstore *s = calloc (1, sizeof *s);

  if (s == NULL)
    return NULL;
  if (hashmap_reserve (&s->pages, 512) == -1
      || content_vector_reserve (&s->contents, 1024) == -1
      || content_vector_push_zero (&s->contents) == NULL
      || hashmap_reserve (&s->by_hash, 512) == -1)
    {
      memstore_free (s);
      return NULL;
    }
  snprintf (s->name, sizeof s->name, "s3bd-memstore:%p", (void *)s);
  return s;
}

void
memstore_free (struct memstore *s)
{
  if (s == NULL)
    return;
  for (size_t i = 0; i < s->contents.len; i++)
    free (s->contents.ptr[i].data);
  content_vector_free (&s->contents);
  hashmap_free (&s->pages);
  id_vector_free (&s->free_ids);
  hashmap_free (&s->by_hash);
  free (s);
}

const char *
memstore_name (struct memstore *s)
{
  return s->name;
}

/* ---- contents ---- */

struct content_key
{
  const struct memstore *s;
  const unsigned char *data;
};

static bool
content_eq (const void *ctx, uint64_t value)
{
  const struct content_key *k = ctx;

  return memcmp (k->s->contents.ptr[value].data, k->data, PAGE) == 0;
}

/* Removal knows the id: no need to compare 4 KiB with itself. */
static bool
id_eq (const void *ctx, uint64_t value)
{
  return value == *(const uint32_t *)ctx;
}

/* Gives back an id content_ref took and could not fill. */
static void
content_drop (struct memstore *s, uint32_t id)
{
  struct content *c = &s->contents.ptr[id];

  c->refs = 0;
  if (id == s->contents.len - 1)
    {
      free (c->data);
      c->data = NULL;
      s->contents.len--;
    }
  else /* it came off free_ids, so there is room to put it back */
    s->free_ids.ptr[s->free_ids.len++] = id;
}

/* Returns the id of a content equal to data, with one more reference;
 * 0 on ENOMEM.
 */
static uint32_t
content_ref (struct memstore *s, const unsigned char *data)
{
  uint64_t hash = page_hash (data);
  struct content_key key = { s, data };
  struct hashmap_slot *slot
      = hashmap_lookup (&s->by_hash, hash, content_eq, &key);
  struct content *c;
  uint32_t id;

  if (slot)
    {
      s->contents.ptr[slot->value].refs++;
      return (uint32_t)slot->value;
    }
  if (s->free_ids.len)
    id = s->free_ids.ptr[--s->free_ids.len];
  else
    {
      /* Ids are 32-bit, and contents keep their data when freed. */
      if (s->contents.len >= UINT32_MAX
          || content_vector_push_zero (&s->contents) == NULL)
        return 0;
      id = (uint32_t)(s->contents.len - 1);
    }
  c = &s->contents.ptr[id];
  if ((c->data == NULL && (c->data = malloc (PAGE)) == NULL)
      || hashmap_insert (&s->by_hash, hash, id) == -1)
    {
      content_drop (s, id);
      return 0;
    }
  memcpy (c->data, data, PAGE);
  c->hash = hash;
  c->refs = 1;
  return id;
}

static int
content_unref (struct memstore *s, uint32_t id)
{
  struct content *c = &s->contents.ptr[id];

  if (--c->refs > 0)
    return 0;
  hashmap_remove (&s->by_hash, c->hash, id_eq, &id);
  return id_vector_append (&s->free_ids, id);
}

/* ---- byte-range I/O ---- */

/* Page numbers are their own hash (hashmap.h): no equality callback. */
static void
read_page (struct memstore *s, uint64_t page, unsigned char *out)
{
  struct hashmap_slot *slot = hashmap_lookup (&s->pages, page, NULL, NULL);

  if (slot)
    memcpy (out, s->contents.ptr[slot->value].data, PAGE);
  else
    memset (out, 0, PAGE);
}

static int
write_page (struct memstore *s, uint64_t page, const unsigned char *data)
{
  struct hashmap_slot *slot;
  uint32_t id = 0;

  if (!all_zero (data) && (id = content_ref (s, data)) == 0)
    return -1;
  slot = hashmap_lookup (&s->pages, page, NULL, NULL);
  if (slot)
    {
      if (content_unref (s, (uint32_t)slot->value) == -1)
        return -1;
      if (id == 0)
        hashmap_remove_slot (&s->pages, slot);
      else
        slot->value = id;
    }
  else if (id && hashmap_insert (&s->pages, page, id) == -1)
    {
      content_unref (s, id);
      return -1;
    }
  return 0;
}

static int
store_rw (struct memstore *s, uint64_t off, size_t len, void *buf, bool write)
{
  unsigned char tmp[PAGE];
  unsigned char *p = buf;

  while (len)
    {
      uint64_t page = off / PAGE;
      size_t in = (size_t)(off % PAGE);
      size_t n = PAGE - in < len ? PAGE - in : len;

      if (write && in == 0 && n == PAGE)
        {
          if (write_page (s, page, p) == -1)
            return -1;
        }
      else
        {
          read_page (s, page, tmp);
          if (write)
            {
              memcpy (tmp + in, p, n);
              if (write_page (s, page, tmp) == -1)
                return -1;
            }
          else
            memcpy (p, tmp + in, n);
        }
      p += n;
      off += n;
      len -= n;
    }
  return 0;
}

int
memstore_put (struct memstore *s, uint64_t block, const void *data)
{
  return write_page (s, block, data);
}

/* ---- the io_manager ---- */

static struct struct_io_manager memstore_manager;

static errcode_t
mem_open (const char *name, int flags, io_channel *channel)
{
  struct memstore *s = NULL;
  io_channel io;

  if (sscanf (name, "s3bd-memstore:%p", (void **)&s) != 1 || s == NULL)
    return EXT2_ET_BAD_DEVICE_NAME;
  io = calloc (1, sizeof *io);
  if (io == NULL)
    return EXT2_ET_NO_MEMORY;
  io->magic = EXT2_ET_MAGIC_IO_CHANNEL;
  io->manager = &memstore_manager;
  io->name = strdup (name);
  if (io->name == NULL)
    {
      free (io);
      return EXT2_ET_NO_MEMORY;
    }
  io->block_size = 1024;
  io->refcount = 1;
  io->private_data = s;
  *channel = io;
  return 0;
}

static errcode_t
mem_close (io_channel io)
{
  if (--io->refcount > 0)
    return 0;
  free (io->name);
  free (io);
  return 0;
}

static errcode_t
mem_set_blksize (io_channel io, int blksize)
{
  io->block_size = blksize;
  return 0;
}

static size_t
span (io_channel io, int count)
{
  return count < 0 ? (size_t) - (long)count
                   : (size_t)count * (size_t)io->block_size;
}

static errcode_t
mem_read_blk64 (io_channel io, unsigned long long block, int count, void *data)
{
  store_rw (io->private_data, block * (uint64_t)io->block_size,
            span (io, count), data, false);
  return 0;
}

static errcode_t
mem_write_blk64 (io_channel io, unsigned long long block, int count,
                 const void *data)
{
  if (store_rw (io->private_data, block * (uint64_t)io->block_size,
                span (io, count), (void *)data, true)
      == -1)
    return EXT2_ET_NO_MEMORY;
  return 0;
}

static errcode_t
mem_read_blk (io_channel io, unsigned long block, int count, void *data)
{
  return mem_read_blk64 (io, block, count, data);
}

static errcode_t
mem_write_blk (io_channel io, unsigned long block, int count, const void *data)
{
  return mem_write_blk64 (io, block, count, data);
}

static errcode_t
mem_write_byte (io_channel io, unsigned long offset, int size, const void *data)
{
  if (store_rw (io->private_data, offset, (size_t)size, (void *)data, true)
      == -1)
    return EXT2_ET_NO_MEMORY;
  return 0;
}

static errcode_t
mem_flush (io_channel io)
{
  return 0;
}

static errcode_t
mem_set_option (io_channel io, const char *option, const char *arg)
{
  return EXT2_ET_INVALID_ARGUMENT;
}

static struct struct_io_manager memstore_manager = {
  .magic = EXT2_ET_MAGIC_IO_MANAGER,
  .name = "s3bd memory store",
  .open = mem_open,
  .close = mem_close,
  .set_blksize = mem_set_blksize,
  .read_blk = mem_read_blk,
  .write_blk = mem_write_blk,
  .flush = mem_flush,
  .write_byte = mem_write_byte,
  .set_option = mem_set_option,
  .read_blk64 = mem_read_blk64,
  .write_blk64 = mem_write_blk64,
};

void *
memstore_io_manager (void)
{
  return &memstore_manager;
}

/* ---- export ---- */

static int
by_block (const void *a, const void *b)
{
  const struct ext4_meta_block *x = a, *y = b;

  return x->block < y->block ? -1 : x->block > y->block;
}

int
memstore_export (struct memstore *s, struct ext4_image *img)
{
  size_t n = 0, next = 0;

  img->meta = calloc (s->pages.n ? s->pages.n : 1, sizeof *img->meta);
  img->content = calloc (s->contents.len, PAGE);
  if (img->meta == NULL || img->content == NULL)
    {
      free (img->meta);
      free (img->content);
      img->meta = NULL;
      img->content = NULL;
      return -1;
    }
  for (size_t i = 0; i < s->pages.cap; i++)
    if (s->pages.slots[i].value)
      img->meta[n++]
          = (struct ext4_meta_block){ s->pages.slots[i].hash,
                                      (uint32_t)s->pages.slots[i].value };
  qsort (img->meta, n, sizeof *img->meta, by_block);
  /* Renumber contents in order of first use, so that the same image
   * gives the same numbers whatever the hash tables' history.
   */
  for (size_t i = 1; i < s->contents.len; i++)
    s->contents.ptr[i].export_id = 0;
  for (size_t i = 0; i < n; i++)
    {
      struct content *c = &s->contents.ptr[img->meta[i].content];

      if (c->export_id == 0)
        {
          c->export_id = (uint32_t)++next;
          memcpy (img->content + (next - 1) * PAGE, c->data, PAGE);
        }
      img->meta[i].content = c->export_id - 1;
    }
  img->nmeta = n;
  img->ncontent = next;
  return 0;
}
