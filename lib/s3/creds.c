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

#define STS_TIMEOUT_S 10      /* per STS request */
#define CONTAINER_TIMEOUT_S 2 /* at least, per container request */
#define PROCESS_TIMEOUT_S 60  /* for a credential_process to finish */
#define SOURCE_SIZE (PATH_MAX + 256)

/* Where temporary credentials come from again at a refresh. */
enum refresh_kind
{
  REFRESH_NONE,
  REFRESH_IMDS,
  REFRESH_WEB_IDENTITY,
  REFRESH_CONTAINER,
  REFRESH_PROCESS,
  REFRESH_ASSUME_ROLE,
};

/* A source_profile chain is followed this many profiles deep at most
 * (the profile named, then its source profiles): longer is an error, as
 * is a cycle.
 */
#define MAX_ROLE_CHAIN 5

struct creds_provider
{
  pthread_mutex_t lock; /* protects: creds, retry_after */
  struct s3_creds creds;
  time_t retry_after; /* no refresh attempt before this */
  /* Immutable after creds_provider_new. */
  enum refresh_kind kind; /* creds expire and can be refreshed */
  unsigned imds_timeout_s;
  char imds_endpoint[IMDS_ENDPOINT_SIZE];
  char *url;        /* STS endpoint, container URL */
  char *role_arn;   /* web identity */
  char *session;    /* web identity session name */
  char *token_file; /* web identity, container */
  char *token;      /* container (AWS_CONTAINER_AUTHORIZATION_TOKEN) */
  char *command;    /* credential_process */
  char *region;     /* assume role: signing region for STS */
  struct creds_provider *base; /* assume role: the source profile's */
  char source[SOURCE_SIZE];
};

/* Where a profile's credentials are looked for, and the source_profile
 * chain that led to it.
 */
struct chain
{
  const char *cred_path, *conf_path;
  unsigned depth;
  const char *names[MAX_ROLE_CHAIN];
};

/* Fetches the credentials of p's temporary source into *c. */
static int
fetch_source (struct creds_provider *p, struct s3_creds *c,
              struct s3bd_error *err)
{
  char role[72];
  unsigned t;

  switch (p->kind)
    {
    case REFRESH_IMDS:
      return imds_fetch (p->imds_endpoint, p->imds_timeout_s, c, role,
                         sizeof role, err);
    case REFRESH_WEB_IDENTITY:
      return sts_assume_role_with_web_identity (p->url, p->role_arn, p->session,
                                                p->token_file, STS_TIMEOUT_S, c,
                                                err);
    case REFRESH_CONTAINER:
      t = p->imds_timeout_s > CONTAINER_TIMEOUT_S ? p->imds_timeout_s
                                                  : CONTAINER_TIMEOUT_S;
      return container_fetch (p->url, p->token, p->token_file, t, c, err);
    case REFRESH_PROCESS:
      return process_fetch (p->command, p->source, PROCESS_TIMEOUT_S, c, err);
    case REFRESH_ASSUME_ROLE:
      {
        struct s3_creds b;
        int r = creds_get (p->base, &b, err);

        if (r == 0)
          r = sts_assume_role (p->url, p->region, p->role_arn, p->session, &b,
                               STS_TIMEOUT_S, c, err);
        explicit_bzero (&b, sizeof b);
        return r;
      }
    case REFRESH_NONE: break;
    }
  return s3bd_fail (err, S3BD_ECREDS, "credentials: nothing to refresh");
}

static int
dup_field (char **dst, const char *v, struct s3bd_error *err)
{
  *dst = strdup (v);
  if (*dst == NULL)
    return s3bd_fail (err, S3BD_ENOMEM, "credentials: out of memory");
  return 0;
}

static void
free_field (char **f)
{
  if (*f)
    {
      explicit_bzero (*f, strlen (*f));
      free (*f);
      *f = NULL;
    }
}

/* The STS endpoint: AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, else the
 * regional one (AWS_REGION, AWS_DEFAULT_REGION), else the global one.
 */
static int
sts_endpoint (char **out, struct s3bd_error *err)
{
  const char *ep = getenv_set ("AWS_ENDPOINT_URL_STS");
  const char *region;
  char buf[256];

  if (ep == NULL)
    ep = getenv_set ("AWS_ENDPOINT_URL");
  if (ep)
    {
      if (strncmp (ep, "http://", 7) != 0 && strncmp (ep, "https://", 8) != 0)
        return s3bd_fail (err, S3BD_EINVAL,
                          "web identity: STS endpoint %.256s is not an "
                          "http:// or https:// URL",
                          ep);
      return dup_field (out, ep, err);
    }
  region = getenv_set ("AWS_REGION");
  if (region == NULL)
    region = getenv_set ("AWS_DEFAULT_REGION");
  if (region
      && strspn (region, "abcdefghijklmnopqrstuvwxyz0123456789-")
             == strlen (region)
      && strlen (region) < 64)
    snprintf (buf, sizeof buf, "https://sts.%s.amazonaws.com/", region);
  else
    snprintf (buf, sizeof buf, "https://sts.amazonaws.com/");
  return dup_field (out, buf, err);
}

/* Web identity from token_file and role_arn, where names the source. */
static int
creds_from_web_identity (struct creds_provider *p, const char *token_file,
                         const char *role_arn, const char *session,
                         const char *where, struct s3bd_error *err)
{
  char name[64];

  if (session == NULL)
    {
      snprintf (name, sizeof name, "s3bd-session-%lld", (long long)time (NULL));
      session = name;
    }
  if (sts_endpoint (&p->url, err) < 0
      || dup_field (&p->role_arn, role_arn, err) < 0
      || dup_field (&p->session, session, err) < 0
      || dup_field (&p->token_file, token_file, err) < 0)
    return -1;
  p->kind = REFRESH_WEB_IDENTITY;
  if (fetch_source (p, &p->creds, err) < 0)
    return -1;
  snprintf (p->source, sizeof p->source, "%s (role %.256s via STS %.256s)",
            where, role_arn, p->url);
  return 1;
}

/* Step 2b: AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN. */
static int
creds_from_env_web_identity (struct creds_provider *p, struct s3bd_error *err)
{
  const char *file = getenv_set ("AWS_WEB_IDENTITY_TOKEN_FILE");
  const char *arn = getenv_set ("AWS_ROLE_ARN");

  if (!file && !arn)
    return 0;
  if (!file || !arn)
    return s3bd_fail (err, S3BD_ECREDS, "web identity: %s is set but %s is not",
                      file ? "AWS_WEB_IDENTITY_TOKEN_FILE" : "AWS_ROLE_ARN",
                      file ? "AWS_ROLE_ARN" : "AWS_WEB_IDENTITY_TOKEN_FILE");
  return creds_from_web_identity (
      p, file, arn, getenv_set ("AWS_ROLE_SESSION_NAME"),
      "web identity (AWS_WEB_IDENTITY_TOKEN_FILE)", err);
}

/* Step 5: container credentials.  Returns 1, 0 when not configured, -1. */
static int
creds_from_container (struct creds_provider *p, struct s3bd_error *err)
{
  const char *rel = getenv_set ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
  const char *full = getenv_set ("AWS_CONTAINER_CREDENTIALS_FULL_URI");
  const char *tok = getenv_set ("AWS_CONTAINER_AUTHORIZATION_TOKEN");
  const char *tokf = getenv_set ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
  char buf[IMDS_ENDPOINT_SIZE];

  if (!rel && !full)
    return 0;
  if (rel)
    {
      if (rel[0] != '/' || strlen (rel) > 400)
        return s3bd_fail (err, S3BD_EINVAL,
                          "container credentials: "
                          "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must be a "
                          "path starting with '/'");
      snprintf (buf, sizeof buf, "http://169.254.170.2%s", rel);
      if (dup_field (&p->url, buf, err) < 0)
        return -1;
    }
  else
    {
      if (container_check_uri (full, err) < 0
          || dup_field (&p->url, full, err) < 0)
        return -1;
      if (tokf && dup_field (&p->token_file, tokf, err) < 0)
        return -1;
      if (!tokf && tok && dup_field (&p->token, tok, err) < 0)
        return -1;
    }
  p->kind = REFRESH_CONTAINER;
  if (fetch_source (p, &p->creds, err) < 0)
    return -1;
  snprintf (p->source, sizeof p->source, "container credentials %.500s",
            p->url);
  return 1;
}

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
static int creds_from_assume_role (struct creds_provider *p,
                                   const struct profile_scan *ps,
                                   const char *profile, const char *where,
                                   const struct chain *ch,
                                   struct s3bd_error *err);

static int
creds_from_file (struct creds_provider *p, const char *path,
                 const char *profile, bool config_file, bool *found,
                 const char **unsupported, const struct chain *ch,
                 struct s3bd_error *err)
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
  if (ps.role_arn && ps.source_profile)
    {
      if (ps.web_identity_token_file)
        r = s3bd_fail (err, S3BD_ECREDS,
                       "%s: both source_profile and web_identity_token_file "
                       "with role_arn: give one",
                       where);
      else
        r = creds_from_assume_role (p, &ps, profile, where, ch, err);
    }
  else if (ps.access_key && ps.secret_key)
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
  else if (*unsupported)
    r = 0; /* reported by the caller */
  else if (ps.web_identity_token_file || ps.role_arn)
    {
      if (!ps.web_identity_token_file)
        r = s3bd_fail (err, S3BD_ECREDS,
                       "%s: role_arn without source_profile or "
                       "web_identity_token_file",
                       where);
      else if (!ps.role_arn)
        r = s3bd_fail (err, S3BD_ECREDS,
                       "%s: web_identity_token_file without role_arn", where);
      else
        {
          char w[sizeof p->source];

          snprintf (w, sizeof w, "web identity of %.3000s", where);
          r = creds_from_web_identity (p, ps.web_identity_token_file,
                                       ps.role_arn, ps.role_session_name, w,
                                       err);
        }
    }
  else if (ps.credential_process)
    {
      snprintf (p->source, sizeof p->source, "credential_process of %.3000s",
                where);
      if (dup_field (&p->command, ps.credential_process, err) < 0)
        r = -1;
      else
        {
          p->kind = REFRESH_PROCESS;
          r = fetch_source (p, &p->creds, err) < 0 ? -1 : 1;
          if (r == 1 && p->creds.expiration == 0)
            p->kind = REFRESH_NONE;
        }
    }
  profile_scan_free (&ps);
  return r;
}

static void describe_files (char *buf, size_t size, const char *cred_path,
                            const char *conf_path);

/* The credentials of a profile from the shared files (the source of an
 * assumed role): 0, or -1 with err naming the profile.
 */
static int
resolve_profile (struct creds_provider *p, const char *profile,
                 const struct chain *ch, struct s3bd_error *err)
{
  char files[2 * PATH_MAX + 32];
  const char *unsupported = NULL;
  bool found = false;
  int r;

  r = creds_from_file (p, ch->cred_path, profile, false, &found, &unsupported,
                       ch, err);
  if (r == 0)
    r = creds_from_file (p, ch->conf_path, profile, true, &found, &unsupported,
                         ch, err);
  if (r != 0)
    return r < 0 ? -1 : 0;
  describe_files (files, sizeof files, ch->cred_path, ch->conf_path);
  if (unsupported)
    return s3bd_fail (err, S3BD_ECREDS,
                      "profile %s in %s uses %s, which s3bd does not support",
                      profile, files, unsupported);
  if (!found)
    return s3bd_fail (err, S3BD_ECREDS, "profile %s not found in %s", profile,
                      files);
  return s3bd_fail (err, S3BD_ECREDS, "profile %s in %s has no credentials",
                    profile, files);
}

/* role_arn + source_profile: the source profile's credentials (static
 * keys, or in turn an assumed role, web identity, credential_process),
 * then AssumeRole with them.  A profile may be its own source when it
 * has static keys, as in the SDKs.  Returns 1, or -1.
 */
static int
creds_from_assume_role (struct creds_provider *p, const struct profile_scan *ps,
                        const char *profile, const char *where,
                        const struct chain *ch, struct s3bd_error *err)
{
  bool self = strcmp (ps->source_profile, profile) == 0;
  char path[MAX_ROLE_CHAIN * 80], name[64];
  struct chain next = *ch;
  struct creds_provider *b;
  const char *region, *session = ps->role_session_name;

  path[0] = '\0';
  for (unsigned i = 0; i < ch->depth; i++)
    append (path, sizeof path, "%.64s -> ", ch->names[i]);
  append (path, sizeof path, "%.64s -> %.64s", profile, ps->source_profile);
  if (ch->depth + 1 >= MAX_ROLE_CHAIN && !self)
    return s3bd_fail (err, S3BD_ECREDS,
                      "%s: the source_profile chain %s is longer than %d "
                      "profiles",
                      where, path, MAX_ROLE_CHAIN);
  for (unsigned i = 0; i < ch->depth && !self; i++)
    if (strcmp (ch->names[i], ps->source_profile) == 0)
      return s3bd_fail (err, S3BD_ECREDS, "%s: source_profile cycle %s", where,
                        path);
  next.names[next.depth++] = profile;

  b = calloc (1, sizeof *b);
  if (b == NULL || pthread_mutex_init (&b->lock, NULL) != 0)
    {
      free (b);
      return s3bd_fail (err, S3BD_ENOMEM, "credentials: out of memory");
    }
  b->imds_timeout_s = p->imds_timeout_s;
  p->base = b;
  if (self)
    {
      if (!ps->access_key || !ps->secret_key)
        return s3bd_fail (err, S3BD_ECREDS,
                          "%s: source_profile is the profile itself, which "
                          "has no static keys",
                          where);
      if (set_creds (&b->creds, ps->access_key, ps->secret_key,
                     ps->session_token, where, err)
          < 0)
        return -1;
      snprintf (b->source, sizeof b->source, "%s", where);
    }
  else if (resolve_profile (b, ps->source_profile, &next, err) < 0)
    {
      s3bd_error_prefix (err, "%s: source_profile %s", where,
                         ps->source_profile);
      return -1;
    }

  if (session == NULL)
    {
      snprintf (name, sizeof name, "s3bd-session-%lld", (long long)time (NULL));
      session = name;
    }
  region = getenv_set ("AWS_REGION");
  if (region == NULL)
    region = getenv_set ("AWS_DEFAULT_REGION");
  if (sts_endpoint (&p->url, err) < 0
      || dup_field (&p->region, region ? region : "us-east-1", err) < 0
      || dup_field (&p->role_arn, ps->role_arn, err) < 0
      || dup_field (&p->session, session, err) < 0)
    return -1;
  p->kind = REFRESH_ASSUME_ROLE;
  if (fetch_source (p, &p->creds, err) < 0)
    {
      s3bd_error_prefix (err, "%s", where);
      return -1;
    }
  snprintf (p->source, sizeof p->source,
            "%.1000s (role %.256s assumed with %.1000s via STS %.256s)", where,
            ps->role_arn, b->source, p->url);
  return 1;
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
  struct chain chain = { 0 };
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
      if (r == 0)
        r = creds_from_env_web_identity (p, err);
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
  chain.cred_path = cred_path;
  chain.conf_path = conf_path;
  r = creds_from_file (p, cred_path, profile, false, &found, &unsupported,
                       &chain, err);
  if (r == 0)
    r = creds_from_file (p, conf_path, profile, true, &found, &unsupported,
                         &chain, err);
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

  /* 5. Container credentials. */
  r = creds_from_container (p, err);
  if (r != 0)
    return r < 0 ? -1 : 0;

  /* 6. Instance metadata. */
  tried[0] = '\0';
  append (tried, sizeof tried, "not in explicit settings, ");
  if (explicit_profile)
    append (tried, sizeof tried, "environment (skipped for a named profile), ");
  else
    append (tried, sizeof tried,
            "environment (AWS_ACCESS_KEY_ID, AWS_WEB_IDENTITY_TOKEN_FILE), ");
  append (tried, sizeof tried, "profile %s in %s, ", profile, files);
  append (tried, sizeof tried,
          "container credentials (AWS_CONTAINER_CREDENTIALS_*_URI not set), ");
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
          p->kind = REFRESH_IMDS;
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
  free_field (&p->url);
  free_field (&p->role_arn);
  free_field (&p->session);
  free_field (&p->token_file);
  free_field (&p->token);
  free_field (&p->command);
  free_field (&p->region);
  creds_provider_free (p->base);
  free (p);
}

int
creds_get (struct creds_provider *p, struct s3_creds *out,
           struct s3bd_error *err)
{
  struct s3bd_error why = { 0 };
  struct s3_creds fresh;
  char when[32];
  time_t now;
  int r = 0;

  pthread_mutex_lock (&p->lock);
  now = time (NULL);
  if (p->kind != REFRESH_NONE && p->creds.expiration != 0
      && p->creds.expiration - now < REFRESH_WINDOW_S
      && (now >= p->retry_after || p->creds.expiration <= now))
    {
      p->retry_after = now + RETRY_AFTER_S;
      r = fetch_source (p, &fresh, &why);
      if (r == 0)
        p->creds = fresh;
      else if (p->creds.expiration <= now)
        {
          format_time (p->creds.expiration, when, sizeof when);
          s3bd_fail (err, S3BD_ECREDS,
                     "refreshing credentials: %s (the current ones expired "
                     "at %s)",
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
