/* s3bd: where the library's log lines go.
 *
 * The library never prints: a caller that wants its lines (the plugin
 * into nbdkit's log, a command onto stderr) gives a function that takes
 * one line, with no newline.  Below every layer that logs: the S3
 * engine's retries, the fetch backends' failures, the readahead policy's
 * decisions.
 */
#ifndef S3BD_LOG_H
#define S3BD_LOG_H

enum s3bd_log_level
{
  S3BD_LOG_ERROR,
  S3BD_LOG_INFO, /* once-only news, e.g. a hydration complete */
  S3BD_LOG_DEBUG
};
typedef void s3bd_log_fn (enum s3bd_log_level level, const char *msg);

/* Formats one line and hands it to log; log NULL says nothing. */
void s3bd_logf (s3bd_log_fn *log, enum s3bd_log_level level, const char *fmt,
                ...) __attribute__ ((format (printf, 3, 4)));

#endif
