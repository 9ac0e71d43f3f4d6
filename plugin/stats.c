/* nbdkit-s3bd-plugin: statistics.
 *
 * With stats-file=PATH a thread of its own rewrites PATH once a second
 * (written beside it, then renamed: a reader never sees half a line), and
 * once more at exit, after the fetcher has stopped, so that the last
 * figures are final.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

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

static void
write_stats (void)
{
  char line[4096], tmp[4096];
  FILE *f;

  stats_line (line, sizeof line);
  snprintf (tmp, sizeof tmp, "%s.tmp", params.stats_file);
  f = fopen (tmp, "w");
  if (f == NULL)
    return;
  fprintf (f, "%s\n", line);
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
