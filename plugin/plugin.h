/* nbdkit-s3bd-plugin: what plugin.c, config.c and stats.c share. */
#ifndef S3BD_PLUGIN_H
#define S3BD_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "s3bd/build.h"
#include "s3bd/fetch.h"
#include "s3bd/index.h"
#include "s3bd/pipe.h"
#include "s3bd/s3.h"
#include "s3bd/serve.h"

/* config.c: the parameters, set by .config, checked by .config_complete,
 * read-only afterwards.
 */
struct s3bd_params
{
  const char *index;       /* index= */
  const char *source;      /* source= */
  const char *export_name; /* NULL: serve any name */
  struct build_opts build; /* source= only: how the image is built */
  struct s3_config s3;
  struct serve_config serve;
  unsigned max_requests; /* GETs in flight */
  uint64_t verify_max;   /* verify-max= */
  const char *stats_file;
  bool stats_json;           /* stats-format=json */
  bool check;                /* one signed GET before serving */
  const char *hydrate;       /* hydrate=: the local copy */
  const char *hydrate_state; /* hydrate-state= */
  bool hydrate_fill;         /* hydrate-fill= */
  unsigned hydrate_requests; /* fill GETs in flight */
  uint64_t hydrate_rate;     /* fill bytes per second; 0: any */
  struct pipe_config pipe;   /* pipe=: dir, channel... (serve, idx later) */
};
extern struct s3bd_params params;

void config_load (void);
int s3bd_config (const char *key, const char *value);
int s3bd_config_complete (void);
extern const char s3bd_config_help_text[];

/* Set up in .get_ready, read-only afterwards. */
struct s3bd_state
{
  struct s3bd_index idx;
  struct s3_client *client;
  struct fetcher *fetcher; /* the hydration's, when hydrate= */
  struct hydrate *hydrate;
  struct serve *serve;
  struct pipe *pipe; /* pipe=, else NULL */
};
extern struct s3bd_state s3bd;
extern int s3bd_debug_verbose;

/* Where the library's log lines go: nbdkit's log. */
s3bd_log_fn plugin_log;

/* stats.c: the statistics line, at exit and every second in stats-file. */
int stats_start (struct s3bd_error *err);
void stats_stop (void);

#endif
