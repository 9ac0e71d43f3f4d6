/* nbdkit-s3bd-plugin: statistics.
 *
 * With stats-file=PATH a thread of its own rewrites PATH once a second
 * (written beside it, then renamed: a reader never sees half a line), and
 * once more at exit, after the fetcher has stopped, so that the last
 * figures are final.  stats-format=json writes one JSON object instead of
 * the line (docs/nbdkit-s3bd-plugin.md, "Statistics"), with the rates
 * over the time since the previous write; the line still goes to the log
 * at exit.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "plugin.h"

static pthread_t thread;
static bool started;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
/* protects: stopping */
static bool stopping;

/* The serve's counters, then the pipe's (per epoch). */
static void
stats_line (char *line, size_t n)
{
  size_t len;

  serve_stats_line (s3bd.serve, line, n);
  len = strlen (line);
  if (s3bd.pipe && len < n)
    pipe_stats_line (s3bd.pipe, line + len, n - len);
}

/* The previous sample, for the rates: touched by one thread at a time
 * (the stats thread, then stats_stop after joining it).
 */
static struct
{
  bool have;
  double t;
  uint64_t bytes_in, requests, hits, misses, waits, present;
} prev;

static double
now_s (void)
{
  struct timespec t;

  clock_gettime (CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void
add_u64 (struct json_object *o, const char *k, uint64_t v)
{
  json_object_object_add (o, k, json_object_new_uint64 (v));
}

static void
add_double (struct json_object *o, const char *k, double v)
{
  json_object_object_add (o, k, json_object_new_double (v));
}

/* One JSON object: counters, rates since the previous call, the copy's
 * progress and ETA, the pipe's line.  NULL when out of memory.
 */
static char *
stats_json (void)
{
  struct fetch_stats fs;
  struct cache_stats cs;
  struct hydrate_stats hs = { 0 };
  struct json_object *o, *h;
  char line[4096];
  double t = now_s (), dt;
  uint64_t reads, dreads;
  char *out = NULL;

  serve_get_stats (s3bd.serve, &fs, &cs);
  if (s3bd.hydrate)
    hydrate_get_stats (s3bd.hydrate, &hs);
  o = json_object_new_object ();
  if (o == NULL)
    return NULL;
  add_u64 (o, "gets", fs.requests);
  add_u64 (o, "retries", fs.retries);
  add_u64 (o, "failed_gets", fs.failures);
  add_u64 (o, "bytes_fetched", fs.bytes_in);
  add_u64 (o, "verified", fs.verified);
  add_u64 (o, "mismatched", fs.mismatches);
  add_u64 (o, "hits", cs.hits);
  add_u64 (o, "misses", cs.misses);
  add_u64 (o, "waits", cs.waits);
  add_u64 (o, "evictions", cs.evictions);
  add_u64 (o, "cache_bytes", cs.bytes);
  add_u64 (o, "prefetched_chunks", cs.prefetched_chunks);
  add_u64 (o, "prefetch_used", cs.prefetch_used);
  add_u64 (o, "prefetch_wasted", cs.prefetch_wasted);
  add_u64 (o, "errors", cs.errors);
  reads = cs.hits + cs.misses + cs.waits;
  dt = prev.have ? t - prev.t : 0;
  add_double (o, "interval_s", dt);
  if (dt > 0)
    {
      dreads = reads - (prev.hits + prev.misses + prev.waits);
      add_double (o, "mb_per_s",
                  (double)(fs.bytes_in - prev.bytes_in) / dt / 1e6);
      add_double (o, "gets_per_s", (double)(fs.requests - prev.requests) / dt);
      if (dreads)
        add_double (o, "hit_ratio",
                    (double)(cs.hits - prev.hits) / (double)dreads);
      else
        json_object_object_add (o, "hit_ratio", NULL);
    }
  else
    {
      add_double (o, "mb_per_s", 0);
      add_double (o, "gets_per_s", 0);
      json_object_object_add (o, "hit_ratio", NULL);
    }
  if (s3bd.hydrate)
    {
      double rate = dt > 0 && prev.have
                        ? (double)(hs.present_bytes - prev.present) / dt
                        : 0;
      h = json_object_new_object ();
      if (h == NULL)
        goto out;
      add_u64 (h, "present_bytes", hs.present_bytes);
      add_u64 (h, "total_bytes", hs.total_bytes);
      add_double (h, "percent",
                  hs.total_bytes ? 100.0 * (double)hs.present_bytes
                                       / (double)hs.total_bytes
                                 : 100.0);
      add_double (h, "fill_mb_per_s", rate / 1e6);
      json_object_object_add (h, "complete",
                              json_object_new_boolean (hs.complete));
      json_object_object_add (h, "fill_running",
                              json_object_new_boolean (hs.fill_running));
      if (!hs.complete && hs.fill_running && rate > 0)
        add_double (h, "eta_s",
                    (double)(hs.total_bytes - hs.present_bytes) / rate);
      else
        json_object_object_add (h, "eta_s", NULL);
      add_u64 (h, "fill_gets", hs.fill_gets);
      add_u64 (h, "fill_failures", hs.fill_failures);
      add_u64 (h, "local_reads", hs.local_reads);
      add_u64 (h, "write_errors", hs.write_errors);
      json_object_object_add (o, "hydrate", h);
    }
  if (s3bd.pipe)
    {
      pipe_stats_line (s3bd.pipe, line, sizeof line);
      json_object_object_add (
          o, "pipe", json_object_new_string (line[0] == ';' ? line + 2 : line));
    }
  stats_line (line, sizeof line);
  json_object_object_add (o, "line", json_object_new_string (line));
  prev.have = true;
  prev.t = t;
  prev.bytes_in = fs.bytes_in;
  prev.requests = fs.requests;
  prev.hits = cs.hits;
  prev.misses = cs.misses;
  prev.waits = cs.waits;
  prev.present = hs.present_bytes;
  out = strdup (json_object_to_json_string_ext (o, JSON_C_TO_STRING_PLAIN));
out:
  json_object_put (o);
  return out;
}

static void
write_stats (void)
{
  char line[4096], tmp[4096];
  char *json = NULL;
  FILE *f;

  if (params.stats_json)
    {
      json = stats_json ();
      if (json == NULL)
        return;
    }
  else
    stats_line (line, sizeof line);
  snprintf (tmp, sizeof tmp, "%s.tmp", params.stats_file);
  f = fopen (tmp, "w");
  if (f == NULL)
    {
      free (json);
      return;
    }
  fprintf (f, "%s\n", json ? json : line);
  free (json);
  if (fclose (f) == 0)
    rename (tmp, params.stats_file);
}

static void *
stats_main (void *arg)
{
  struct timespec t;

  pthread_mutex_lock (&lock);
  while (!stopping)
    {
      pthread_mutex_unlock (&lock);
      write_stats ();
      pthread_mutex_lock (&lock);
      clock_gettime (CLOCK_REALTIME, &t);
      t.tv_sec++;
      while (!stopping
             && pthread_cond_timedwait (&cond, &lock, &t) != ETIMEDOUT)
        ;
    }
  pthread_mutex_unlock (&lock);
  return NULL;
}

int
stats_start (struct s3bd_error *err)
{
  int e;

  if (params.stats_file == NULL)
    return 0;
  e = pthread_create (&thread, NULL, stats_main, NULL);
  if (e)
    return s3bd_fail (err, S3BD_ENOMEM, "cannot start the stats thread: %s",
                      strerror (e));
  started = true;
  return 0;
}

void
stats_stop (void)
{
  char line[4096];

  if (started)
    {
      pthread_mutex_lock (&lock);
      stopping = true;
      pthread_cond_signal (&cond);
      pthread_mutex_unlock (&lock);
      pthread_join (thread, NULL);
      started = false;
    }
  if (s3bd.serve == NULL)
    return;
  if (params.stats_file)
    write_stats ();
  stats_line (line, sizeof line);
  /* At exit, whatever the verbosity: the operator wants these. */
  fprintf (stderr, "nbdkit: s3bd: %s\n", line);
}
