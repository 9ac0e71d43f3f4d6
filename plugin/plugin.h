/* nbdkit-s3bd-plugin: what plugin.c, map.c and worker.c share. */
#ifndef S3BD_PLUGIN_H
#define S3BD_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "cache.h"
#include "s3bd/index.h"
#include "s3bd/s3.h"

struct nbdkit_extents;

/* Set up in .get_ready, read-only afterwards. */
struct s3bd_state {
  struct s3bd_index idx;
  struct s3_client *client;
  struct cache *cache;
};
extern struct s3bd_state s3bd;
extern int s3bd_debug_verbose;

/* map.c: the device through the index. */
int read_range (void *buf, uint64_t count, uint64_t offset,
                struct s3bd_error *err);
void prefetch_range (uint64_t offset, uint64_t count);
int map_extents (uint32_t count, uint64_t offset,
                 struct nbdkit_extents *extents);

/* worker.c: the thread that runs the S3 engine. */
int worker_start (struct s3_client *c, unsigned max_requests,
                  const char *stats_file, struct s3bd_error *err);
void worker_stop (void);
void worker_free (void);
void worker_fetch (void *arg, struct cache *c, struct cache_fill *fill,
                   uint64_t object, uint64_t off, uint64_t len,
                   const struct iovec *iov, int iovcnt);
void stats_line (char *buf, size_t n);

#endif
