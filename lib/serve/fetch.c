/* s3bd: the fetch interface's optional calls.  See fetch.h. */
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
