/* s3bd: the fetch interface's optional calls.  See fetch.h. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "s3bd/fetch.h"

int
fetcher_start (struct fetcher *f, struct s3bd_error *err)
{
  return f->ops->start ? f->ops->start (f, err) : 0;
}

void
fetcher_stop (struct fetcher *f)
{
  if (f->ops->stop)
    f->ops->stop (f);
}

void
fetcher_get_stats (struct fetcher *f, struct fetch_stats *s)
{
  memset (s, 0, sizeof *s);
  if (f->ops->get_stats)
    f->ops->get_stats (f, s);
}

void
fetcher_free (struct fetcher *f)
{
  if (f && f->ops->free)
    f->ops->free (f);
}

void
s3bd_logf (s3bd_log_fn *log, enum s3bd_log_level level, const char *fmt, ...)
{
  char line[1024];
  va_list ap;

  if (log == NULL)
    return;
  va_start (ap, fmt);
  vsnprintf (line, sizeof line, fmt, ap);
  va_end (ap);
  log (level, line);
}
