/* s3bd: AWS credentials: the provider chain and the provider.  See
 * include/s3bd/creds.h.
 *
 * How it works.  creds_provider_new walks the chain once and keeps the
 * first credentials it finds, with a description of where they came from
 * (creds_source, immutable afterwards).  Only credentials from instance
 * metadata expire: creds_get refreshes them under the provider's lock when
 * they are within REFRESH_WINDOW_S of expiry.  The lock is held across the
 * refresh's HTTP requests on purpose: callers need the new credentials
 * anyway, and one refresh at a time keeps a hundred threads from asking the
 * metadata service at once.  A failed refresh is not an error while the
 * old credentials are still valid: they are served, and the next attempt
 * waits RETRY_AFTER_S so that a dead metadata service does not stall every
 * request for its timeout.
 *
 * The shared files are read in ini.c, instance metadata in imds.c; what
 * the three files share is in credsint.h.
 *
 * Secrets never reach an error message: values are named, never quoted.
 * Buffers that held secrets are wiped before they are freed.
 */
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "s3bd/creds.h"
#include "s3bd/error.h"

#include "credsint.h"

#define REFRESH_WINDOW_S 300 /* refresh this close to expiry */
#define RETRY_AFTER_S 10     /* between failed refresh attempts */

#define IMDS_DEFAULT_ENDPOINT "http://169.254.169.254"

struct creds_provider
{
  pthread_mutex_t lock; /* protects: creds, retry_after */
  struct s3_creds creds;
  time_t retry_after; /* no refresh attempt before this */
  /* Immutable after creds_provider_new. */
  bool from_imds; /* creds expire and can be refreshed */
  unsigned imds_timeout_s;
  char imds_endpoint[IMDS_ENDPOINT_SIZE];
  char source[PATH_MAX + 256];
};

/* ---- Small helpers ---- */

/* Appends to a message buffer, truncating silently: the buffers are for
 * human readers and already sized for the usual case.
 */
static void append (char *buf, size_t size, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

static void
append (char *buf, size_t size, const char *fmt, ...)
{
  size_t used = strnlen (buf, size);
  va_list ap;

  if (used + 1 >= size)
    return;
  va_start (ap, fmt);
  vsnprintf (buf + used, size - used, fmt, ap);
  va_end (ap);
}

static void
format_time (int64_t t, char *buf, size_t size)
{
  time_t tt = (time_t)t;
  struct tm tm;

  if (gmtime_r (&tt, &tm) == NULL
      || strftime (buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    snprintf (buf, size, "%" PRId64, t);
}

/* Copies one credential field.  `what` names the field and `where` its
 * source, for the message; the value itself is never quoted.  Control
 * characters and spaces are refused because the values end up in HTTP
 * headers.
 */
static int
set_field (char *dst, size_t size, const char *value, const char *what,
           const char *where, struct s3bd_error *err)
{
  size_t len = strlen (value);
  size_t i;

  if (len >= size)
    return s3bd_fail (err, S3BD_EINVAL,
                      "%s: the %s is too long (%zu bytes, at most %zu)", where,
                      what, len, size - 1);
  for (i = 0; i < len; i++)
    if ((unsigned char)value[i] <= ' ' || (unsigned char)value[i] >= 0x7f)
      return s3bd_fail (err, S3BD_EINVAL,
                        "%s: the %s contains a space or a control character",
                        where, what);
  memcpy (dst, value, len + 1);
  return 0;
}

int
set_creds (struct s3_creds *c, const char *access_key, const char *secret_key,
           const char *session_token, const char *where, struct s3bd_error *err)
{
  int r;

  memset (c, 0, sizeof *c);
  r = set_field (c->access_key, sizeof c->access_key, access_key,
                 "access key id", where, err);
  if (r == 0)
    r = set_field (c->secret_key, sizeof c->secret_key, secret_key,
                   "secret access key", where, err);
  if (r == 0 && nonempty (session_token))
    r = set_field (c->session_token, sizeof c->session_token, session_token,
                   "session token", where, err);
  if (r < 0)
    explicit_bzero (c, sizeof *c);
  return r;
}

/* ---- Time ---- */

static bool
digits (const char *s, int n, int *out)
{
  int v = 0;
  int i;

  for (i = 0; i < n; i++)
    {
      if (s[i] < '0' || s[i] > '9')
        return false;
      v = v * 10 + (s[i] - '0');
    }
  *out = v;
  return true;
}

static int
days_in_month (int year, int month)
{
  static const int days[12]
      = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

  return month == 2 && leap ? 29 : days[month - 1];
}

int
parse_iso8601 (const char *s, int64_t *sec, uint32_t *nsec)
{
  int year, mon, day, hour, min, secs;
  uint32_t ns = 0;
  const char *p;
  struct tm tm;

  /* && stops at the first mismatch, so a short string is never read past
   * its NUL.
   */
  if (s == NULL || !digits (s, 4, &year) || s[4] != '-'
      || !digits (s + 5, 2, &mon) || s[7] != '-' || !digits (s + 8, 2, &day)
      || s[10] != 'T' || !digits (s + 11, 2, &hour) || s[13] != ':'
      || !digits (s + 14, 2, &min) || s[16] != ':'
      || !digits (s + 17, 2, &secs))
    return -1;
  if (mon < 1 || mon > 12 || day < 1 || day > days_in_month (year, mon)
      || hour > 23 || min > 59 || secs > 59)
    return -1;

  p = s + 19;
  if (*p == '.')
    {
      int n = 0;

      for (p++; *p >= '0' && *p <= '9'; p++, n++)
        {
          if (n == 9)
            return -1;
          ns = ns * 10 + (uint32_t)(*p - '0');
        }
      if (n == 0)
        return -1;
      for (; n < 9; n++)
        ns *= 10;
    }
  if (p[0] != 'Z' || p[1] != '\0')
    return -1;

  memset (&tm, 0, sizeof tm);
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = min;
  tm.tm_sec = secs;
  if (sec)
    *sec = (int64_t)timegm (&tm);
  if (nsec)
    *nsec = ns;
  return 0;
}

/* ---- The chain ---- */

/* Step 2.  Returns 1 when found, 0 when not set, -1 on error. */
static int
creds_from_env (struct creds_provider *p, struct s3bd_error *err)
{
  const char *ak = getenv_set ("AWS_ACCESS_KEY_ID");
  const char *sk = getenv_set ("AWS_SECRET_ACCESS_KEY");
  int r;

  if (!ak && !sk)
    return 0;
  if (!ak || !sk)
    return s3bd_fail (err, S3BD_ECREDS, "environment: %s is set but %s is not",
                      ak ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                      ak ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
  r = set_creds (&p->creds, ak, sk, getenv_set ("AWS_SESSION_TOKEN"),
                 "environment", err);
  if (r < 0)
    return -1;
  snprintf (p->source, sizeof p->source, "environment");
  return 1;
}

/* Step 3 for one file.  Returns 1 when the profile there has keys, 0 when
 * it has none, -1 on error.
 */
static int
creds_from_file (struct creds_provider *p, const char *path,
                 const char *profile, bool config_file, bool *found,
                 const char **unsupported, struct s3bd_error *err)
{
  struct profile_scan ps = { .profile = profile, .config_file = config_file };
  char where[sizeof p->source];
  int r = 0;

  if (profile_scan_file (path, &ps, err) < 0)
    {
      profile_scan_free (&ps);
      return -1;
    }
  *found = *found || ps.found;
  if (*unsupported == NULL)
    *unsupported = ps.unsupported;
  snprintf (where, sizeof where, "profile %s in %s", profile, path);
  if (ps.access_key && ps.secret_key)
    {
      r = set_creds (&p->creds, ps.access_key, ps.secret_key, ps.session_token,
                     where, err);
      if (r == 0)
        {
          memcpy (p->source, where, sizeof p->source);
          r = 1;
        }
    }
  else if (ps.access_key || ps.secret_key)
    r = s3bd_fail (
        err, S3BD_ECREDS, "%s: %s without %s", where,
        ps.access_key ? "aws_access_key_id" : "aws_secret_access_key",
        ps.access_key ? "aws_secret_access_key" : "aws_access_key_id");
  profile_scan_free (&ps);
  return r;
}

static bool
imds_disabled (void)
{
  const char *v = getenv ("AWS_EC2_METADATA_DISABLED");

  return v && strcasecmp (v, "true") == 0;
}

/* "/root/.aws/credentials or /root/.aws/config", for messages. */
static void
describe_files (char *buf, size_t size, const char *cred_path,
                const char *conf_path)
{
  buf[0] = '\0';
  if (cred_path[0] && conf_path[0])
    snprintf (buf, size, "%s or %s", cred_path, conf_path);
  else if (cred_path[0] || conf_path[0])
    snprintf (buf, size, "%s", cred_path[0] ? cred_path : conf_path);
  else
    snprintf (buf, size, "no file (HOME is not set)");
}

static int
resolve_chain (struct creds_provider *p, const struct creds_config *cfg,
               struct s3bd_error *err)
{
  char cred_path[PATH_MAX], conf_path[PATH_MAX];
  char files[2 * PATH_MAX + 32];
  char tried[sizeof err->msg];
  const char *profile, *unsupported = NULL;
  bool explicit_profile, named, found = false;
  struct s3bd_error imds_err = { 0 };
  char role[72];
  int r;

  if (cfg->anonymous)
    {
      p->creds.anonymous = true;
      snprintf (p->source, sizeof p->source, "anonymous");
      return 0;
    }

  /* 1. Explicit settings. */
  if (nonempty (cfg->access_key) || nonempty (cfg->secret_key))
    {
      if (!nonempty (cfg->access_key) || !nonempty (cfg->secret_key))
        return s3bd_fail (
            err, S3BD_EINVAL, "explicit credentials: %s given without %s",
            nonempty (cfg->access_key) ? "access key" : "secret key",
            nonempty (cfg->access_key) ? "secret key" : "access key");
      r = set_creds (&p->creds, cfg->access_key, cfg->secret_key,
                     cfg->session_token, "explicit credentials", err);
      if (r < 0)
        return -1;
      snprintf (p->source, sizeof p->source, "explicit");
      return 0;
    }

  explicit_profile = nonempty (cfg->profile);
  profile = explicit_profile ? cfg->profile : getenv_set ("AWS_PROFILE");
  named = profile != NULL;
  if (profile == NULL)
    profile = "default";

  /* 2. The environment, unless the caller chose a profile (as the AWS
   * CLI's --profile does; AWS_PROFILE does not).
   */
  if (!explicit_profile)
    {
      r = creds_from_env (p, err);
      if (r != 0)
        return r < 0 ? -1 : 0;
    }

  /* 3. The shared files, credentials first. */
  r = shared_file_path ("AWS_SHARED_CREDENTIALS_FILE", "credentials", cred_path,
                        sizeof cred_path, err);
  if (r == 0)
    r = shared_file_path ("AWS_CONFIG_FILE", "config", conf_path,
                          sizeof conf_path, err);
  if (r < 0)
    return -1;
  r = creds_from_file (p, cred_path, profile, false, &found, &unsupported, err);
  if (r == 0)
    r = creds_from_file (p, conf_path, profile, true, &found, &unsupported,
                         err);
  if (r != 0)
    return r < 0 ? -1 : 0;
  describe_files (files, sizeof files, cred_path, conf_path);
  if (unsupported)
    return s3bd_fail (
        err, S3BD_ECREDS,
        "profile %s in %s uses %s, which s3bd does not support; give it "
        "static keys, or use the environment or instance metadata",
        profile, files, unsupported);
  if (named && !found)
    return s3bd_fail (err, S3BD_ECREDS, "profile %s not found in %s", profile,
                      files);

  /* 4. Instance metadata. */
  tried[0] = '\0';
  append (tried, sizeof tried, "not in explicit settings, ");
  if (explicit_profile)
    append (tried, sizeof tried, "environment (skipped for a named profile), ");
  else
    append (tried, sizeof tried, "environment (AWS_ACCESS_KEY_ID), ");
  append (tried, sizeof tried, "profile %s in %s, ", profile, files);
  if (imds_disabled ())
    append (tried, sizeof tried,
            "instance metadata (disabled by AWS_EC2_METADATA_DISABLED)");
  else
    {
      const char *ep = getenv_set ("AWS_EC2_METADATA_SERVICE_ENDPOINT");
      size_t n;

      if (ep == NULL)
        ep = IMDS_DEFAULT_ENDPOINT;
      n = strlen (ep);
      while (n > 0 && ep[n - 1] == '/')
        n--;
      if (n >= sizeof p->imds_endpoint)
        return s3bd_fail (err, S3BD_EINVAL,
                          "AWS_EC2_METADATA_SERVICE_ENDPOINT: too long");
      if (strncmp (ep, "http://", 7) != 0 && strncmp (ep, "https://", 8) != 0)
        return s3bd_fail (err, S3BD_EINVAL,
                          "AWS_EC2_METADATA_SERVICE_ENDPOINT: %s: not an "
                          "http:// or https:// URL",
                          ep);
      memcpy (p->imds_endpoint, ep, n);
      p->imds_endpoint[n] = '\0';

      r = imds_fetch (p->imds_endpoint, p->imds_timeout_s, &p->creds, role,
                      sizeof role, &imds_err);
      if (r == 0)
        {
          p->from_imds = true;
          snprintf (p->source, sizeof p->source, "instance metadata role %s",
                    role);
          return 0;
        }
      append (tried, sizeof tried, "instance metadata (%s)", imds_err.msg);
    }
  return s3bd_fail (
      err, S3BD_ECREDS,
      "no credentials found: %s; set them or use anonymous access", tried);
}

int
creds_provider_new (const struct creds_config *cfg, struct creds_provider **out,
                    struct s3bd_error *err)
{
  static const struct creds_config defaults;
  struct creds_provider *p;

  *out = NULL;
  if (cfg == NULL)
    cfg = &defaults;
  p = calloc (1, sizeof *p);
  if (p == NULL)
    return s3bd_fail (err, S3BD_ENOMEM, "credentials: out of memory");
  if (pthread_mutex_init (&p->lock, NULL) != 0)
    {
      free (p);
      return s3bd_fail (err, S3BD_ENOMEM,
                        "credentials: pthread_mutex_init failed");
    }
  p->imds_timeout_s = cfg->imds_timeout_s ? cfg->imds_timeout_s : 1;
  if (resolve_chain (p, cfg, err) < 0)
    {
      creds_provider_free (p);
      return -1;
    }
  *out = p;
  return 0;
}

void
creds_provider_free (struct creds_provider *p)
{
  if (p == NULL)
    return;
  pthread_mutex_destroy (&p->lock);
  explicit_bzero (&p->creds, sizeof p->creds);
  free (p);
}

int
creds_get (struct creds_provider *p, struct s3_creds *out,
           struct s3bd_error *err)
{
  struct s3bd_error why = { 0 };
  struct s3_creds fresh;
  char role[72], when[32];
  time_t now;
  int r = 0;

  pthread_mutex_lock (&p->lock);
  now = time (NULL);
  if (p->from_imds && p->creds.expiration - now < REFRESH_WINDOW_S
      && (now >= p->retry_after || p->creds.expiration <= now))
    {
      p->retry_after = now + RETRY_AFTER_S;
      r = imds_fetch (p->imds_endpoint, p->imds_timeout_s, &fresh, role,
                      sizeof role, &why);
      if (r == 0)
        p->creds = fresh;
      else if (p->creds.expiration <= now)
        {
          format_time (p->creds.expiration, when, sizeof when);
          s3bd_fail (err, S3BD_ECREDS,
                     "refreshing credentials from instance metadata: %s (the "
                     "current ones expired at %s)",
                     why.msg, when);
        }
      else
        r = 0; /* serve the current ones until they expire */
      explicit_bzero (&fresh, sizeof fresh);
    }
  if (r == 0)
    *out = p->creds;
  pthread_mutex_unlock (&p->lock);
  return r;
}

const char *
creds_source (const struct creds_provider *p)
{
  return p->source;
}
