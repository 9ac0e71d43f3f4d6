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

#include "s3bd/ext4.h"

#define PAGE EXT4_BLOCK_SIZE

struct content
{
  uint64_t hash;
  uint32_t refs; /* 0: free slot */
  uint32_t export_id;
  unsigned char *data;
};

/* Open addressing, linear probing, power-of-two sizes. */
struct page_slot
{
  uint64_t page; /* page number + 1; 0: empty */
  uint32_t content;
};

struct memstore
{
  struct page_slot *pages;
  size_t pages_cap, pages_used;
  struct content *contents; /* [0] unused: content 0 means none */
  size_t ncontents, contents_cap;
  uint32_t *free_ids; /* contents whose refs fell to 0 */
  size_t nfree, free_cap;
  uint32_t *by_hash; /* content ids, open addressing by hash */
  size_t by_hash_cap, by_hash_used;
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

static uint64_t
mix (uint64_t x)
{
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

struct memstore *
memstore_new (void)
{
  struct memstore *s = calloc (1, sizeof *s);

  if (s == NULL)
    return NULL;
  s->pages_cap = 1024;
  s->pages = calloc (s->pages_cap, sizeof *s->pages);
  s->contents_cap = 1024;
  s->contents = calloc (s->contents_cap, sizeof *s->contents);
  s->ncontents = 1;
  s->by_hash_cap = 1024;
  s->by_hash = calloc (s->by_hash_cap, sizeof *s->by_hash);
  if (s->pages == NULL || s->contents == NULL || s->by_hash == NULL)
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
  for (size_t i = 0; i < s->ncontents; i++)
    free (s->contents[i].data);
  free (s->contents);
  free (s->pages);
  free (s->free_ids);
  free (s->by_hash);
  free (s);
}

const char *
memstore_name (struct memstore *s)
{
  return s->name;
}

/* ---- page map ---- */

static struct page_slot *
page_find (struct memstore *s, uint64_t page)
{
  size_t mask = s->pages_cap - 1;

  for (size_t i = mix (page) & mask;; i = (i + 1) & mask)
    if (s->pages[i].page == page + 1 || s->pages[i].page == 0)
      return &s->pages[i];
}

static int
pages_grow (struct memstore *s)
{
  struct page_slot *old = s->pages;
  size_t oldcap = s->pages_cap;

  if (oldcap > SIZE_MAX / 2 / sizeof *old)
    return -1;
  s->pages = calloc (oldcap * 2, sizeof *old);
  if (s->pages == NULL)
    {
      s->pages = old;
      return -1;
    }
  s->pages_cap = oldcap * 2;
  for (size_t i = 0; i < oldcap; i++)
    if (old[i].page)
      *page_find (s, old[i].page - 1) = old[i];
  free (old);
  return 0;
}

/* Removing from a linear-probing table: shift later entries back so that
 * every remaining key stays reachable from its home slot.
 */
static void
page_remove (struct memstore *s, struct page_slot *slot)
{
  size_t mask = s->pages_cap - 1;
  size_t i = (size_t)(slot - s->pages);

  s->pages[i].page = 0;
  s->pages_used--;
  for (size_t j = (i + 1) & mask; s->pages[j].page; j = (j + 1) & mask)
    {
      size_t home = mix (s->pages[j].page - 1) & mask;

      /* Move j back to i unless its home lies cyclically in (i, j]. */
      if ((j > i && (home <= i || home > j))
          || (j < i && (home <= i && home > j)))
        {
          s->pages[i] = s->pages[j];
          s->pages[j].page = 0;
          i = j;
        }
    }
}

/* ---- contents ---- */

static uint32_t *
hash_find (struct memstore *s, uint64_t hash, const unsigned char *data)
{
  size_t mask = s->by_hash_cap - 1;

  for (size_t i = hash & mask;; i = (i + 1) & mask)
    {
      uint32_t id = s->by_hash[i];

      if (id == 0)
        return &s->by_hash[i];
      if (s->contents[id].hash == hash
          && memcmp (s->contents[id].data, data, PAGE) == 0)
        return &s->by_hash[i];
    }
}

static int
by_hash_grow (struct memstore *s)
{
  uint32_t *old = s->by_hash;
  size_t oldcap = s->by_hash_cap;

  s->by_hash = calloc (oldcap * 2, sizeof *old);
  if (s->by_hash == NULL)
    {
      s->by_hash = old;
      return -1;
    }
  s->by_hash_cap = oldcap * 2;
  for (size_t i = 0; i < oldcap; i++)
    if (old[i])
      *hash_find (s, s->contents[old[i]].hash, s->contents[old[i]].data)
          = old[i];
  free (old);
  return 0;
}

static void
by_hash_remove (struct memstore *s, uint32_t id)
{
  size_t mask = s->by_hash_cap - 1;
  size_t i = s->contents[id].hash & mask;

  while (s->by_hash[i] != id)
    i = (i + 1) & mask;
  s->by_hash[i] = 0;
  s->by_hash_used--;
  for (size_t j = (i + 1) & mask; s->by_hash[j]; j = (j + 1) & mask)
    {
      size_t home = s->contents[s->by_hash[j]].hash & mask;

      if ((j > i && (home <= i || home > j))
          || (j < i && (home <= i && home > j)))
        {
          s->by_hash[i] = s->by_hash[j];
          s->by_hash[j] = 0;
          i = j;
        }
    }
}

/* Returns the id of a content equal to data, with one more reference. */
static uint32_t
content_ref (struct memstore *s, const unsigned char *data)
{
  uint64_t hash = page_hash (data);
  uint32_t *slot, id;

  if ((s->by_hash_used + 1) * 2 > s->by_hash_cap && by_hash_grow (s) == -1)
    return 0;
  slot = hash_find (s, hash, data);
  if (*slot)
    {
      s->contents[*slot].refs++;
      return *slot;
    }
  if (s->nfree)
    id = s->free_ids[--s->nfree];
  else
    {
      if (s->ncontents == s->contents_cap)
        {
          struct content *c;

          if (s->contents_cap > SIZE_MAX / 2 / sizeof *c
              || s->contents_cap >= UINT32_MAX / 2)
            return 0;
          c = realloc (s->contents, s->contents_cap * 2 * sizeof *c);
          if (c == NULL)
            return 0;
          memset (c + s->contents_cap, 0, s->contents_cap * sizeof *c);
          s->contents = c;
          s->contents_cap *= 2;
        }
      id = (uint32_t)s->ncontents++;
    }
  if (s->contents[id].data == NULL
      && (s->contents[id].data = malloc (PAGE)) == NULL)
    {
      if (id == s->ncontents - 1)
        s->ncontents--;
      else
        s->free_ids[s->nfree++] = id;
      return 0;
    }
  memcpy (s->contents[id].data, data, PAGE);
  s->contents[id].hash = hash;
  s->contents[id].refs = 1;
  *hash_find (s, hash, data) = id;
  s->by_hash_used++;
  return id;
}

static int
content_unref (struct memstore *s, uint32_t id)
{
  if (--s->contents[id].refs > 0)
    return 0;
  by_hash_remove (s, id);
  if (s->nfree == s->free_cap)
    {
      size_t cap = s->free_cap ? s->free_cap * 2 : 256;
      uint32_t *f = realloc (s->free_ids, cap * sizeof *f);

      if (f == NULL)
        return -1;
      s->free_ids = f;
      s->free_cap = cap;
    }
  s->free_ids[s->nfree++] = id;
  return 0;
}

/* ---- byte-range I/O ---- */

static void
read_page (struct memstore *s, uint64_t page, unsigned char *out)
{
  struct page_slot *slot = page_find (s, page);

  if (slot->page)
    memcpy (out, s->contents[slot->content].data, PAGE);
  else
    memset (out, 0, PAGE);
}

static int
write_page (struct memstore *s, uint64_t page, const unsigned char *data)
{
  struct page_slot *slot;
  uint32_t id = 0;

  if ((s->pages_used + 1) * 2 > s->pages_cap && pages_grow (s) == -1)
    return -1;
  if (!all_zero (data) && (id = content_ref (s, data)) == 0)
    return -1;
  slot = page_find (s, page);
  if (slot->page)
    {
      if (content_unref (s, slot->content) == -1)
        return -1;
      if (id == 0)
        {
          page_remove (s, slot);
          return 0;
        }
      slot->content = id;
    }
  else if (id)
    {
      slot->page = page + 1;
      slot->content = id;
      s->pages_used++;
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

  img->meta = malloc ((s->pages_used ? s->pages_used : 1) * sizeof *img->meta);
  img->content = malloc ((s->ncontents ? s->ncontents : 1) * (size_t)PAGE);
  if (img->meta == NULL || img->content == NULL)
    {
      free (img->meta);
      free (img->content);
      img->meta = NULL;
      img->content = NULL;
      return -1;
    }
  for (size_t i = 0; i < s->pages_cap; i++)
    if (s->pages[i].page)
      img->meta[n++] = (struct ext4_meta_block){ s->pages[i].page - 1,
                                                 s->pages[i].content };
  qsort (img->meta, n, sizeof *img->meta, by_block);
  /* Renumber contents in order of first use, so that the same image
   * gives the same numbers whatever the hash tables' history.
   */
  for (size_t i = 1; i < s->ncontents; i++)
    s->contents[i].export_id = 0;
  for (size_t i = 0; i < n; i++)
    {
      struct content *c = &s->contents[img->meta[i].content];

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
