/* s3bd: the one formatter of log lines.  See include/s3bd/log.h. */
#include <stdarg.h>
#include <stdio.h>

#include "s3bd/log.h"

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
