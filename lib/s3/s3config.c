/* s3bd: the S3 connection options by name.  See s3_config_set in s3.h. */
#include <string.h>

#include "s3bd/parse.h"
#include "s3bd/s3.h"

/* Bounds: wide enough for any real use, narrow enough that a typo
 * ("timeout=6000000") is caught.
 */
#define MAX_CONNECTIONS 1024
#define MAX_ATTEMPTS 100
#define MAX_TIMEOUT_S 86400
#define MAX_CONNECT_TIMEOUT_S 600
#define MAX_STALL_TIMEOUT_S 600

static int
set_bool (const char *value, bool *out, struct s3bd_error *err)
{
  if (parse_bool (value, out) == -1)
    return s3bd_fail (err, S3BD_EINVAL, "expected true or false, got '%s'",
                      value);
  return 0;
}

static int
set_string (const char *value, const char **out, struct s3bd_error *err)
{
  if (*value == '\0')
    return s3bd_fail (err, S3BD_EINVAL, "must not be empty");
  *out = value;
  return 0;
}

int
s3_config_set (struct s3_config *cfg, const char *name, const char *value,
               struct s3bd_error *err)
{
  uint64_t v;
  bool b;

  if (strcmp (name, "endpoint") == 0)
    return set_string (value, &cfg->endpoint, err);
  if (strcmp (name, "region") == 0)
    return set_string (value, &cfg->region, err);
  if (strcmp (name, "profile") == 0)
    return set_string (value, &cfg->creds.profile, err);
  if (strcmp (name, "ca-file") == 0)
    return set_string (value, &cfg->ca_file, err);
  if (strcmp (name, "path-style") == 0)
    {
      if (set_bool (value, &b, err) == -1)
        return -1;
      cfg->addressing = b ? S3_ADDR_PATH : S3_ADDR_VIRTUAL;
      return 0;
    }
  if (strcmp (name, "tls-verify") == 0)
    {
      if (set_bool (value, &b, err) == -1)
        return -1;
      cfg->no_verify_tls = !b;
      return 0;
    }
  if (strcmp (name, "anonymous") == 0)
    return set_bool (value, &cfg->creds.anonymous, err);
  if (strcmp (name, "connections") == 0)
    {
      if (parse_count (value, 1, MAX_CONNECTIONS, &v, err))
        return -1;
      cfg->max_connections = (unsigned)v;
      return 0;
    }
  if (strcmp (name, "retries") == 0)
    {
      if (parse_count (value, 1, MAX_ATTEMPTS, &v, err))
        return -1;
      cfg->max_attempts = (unsigned)v;
      return 0;
    }
  if (strcmp (name, "timeout") == 0)
    {
      if (parse_count (value, 1, MAX_TIMEOUT_S, &v, err))
        return -1;
      cfg->retry_budget_ms = (unsigned)v * 1000;
      return 0;
    }
  if (strcmp (name, "stall-timeout") == 0)
    {
      if (parse_count (value, 1, MAX_STALL_TIMEOUT_S, &v, err))
        return -1;
      cfg->stall_timeout_s = (unsigned)v;
      return 0;
    }
  if (strcmp (name, "connect-timeout") == 0)
    {
      if (parse_count (value, 1, MAX_CONNECT_TIMEOUT_S, &v, err))
        return -1;
      cfg->connect_timeout_ms = (unsigned)v * 1000;
      return 0;
    }
  return 1;
}
