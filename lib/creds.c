/* s3bd: AWS credentials: the provider chain, the shared files and
 * instance metadata.  See include/s3bd/creds.h.
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
 * The shared files are parsed here rather than with an INI library: the
 * AWS dialect (indented sub-sections, '#' and '=' inside values, no inline
 * comments) is what botocore's configparser accepts, which generic INI
 * parsers get wrong, and it is small.
 *
 * Secrets never reach an error message: the parser reports line numbers,
 * not lines, and values are named, never quoted.  Buffers that held
 * secrets are wiped before they are freed.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
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
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "s3bd/creds.h"
#include "s3bd/error.h"

#define REFRESH_WINDOW_S 300 /* refresh this close to expiry */
#define RETRY_AFTER_S 10     /* between failed refresh attempts */
#define MAX_SHARED_FILE (4 * 1024 * 1024)

#define IMDS_DEFAULT_ENDPOINT "http://169.254.169.254"
#define IMDS_TOKEN_PATH "/latest/api/token"
#define IMDS_ROLE_PATH "/latest/meta-data/iam/security-credentials/"
#define IMDS_MAX_BODY 16384
#define IMDS_MAX_TIMEOUT_S 600

struct creds_provider
{
  pthread_mutex_t lock; /* protects: creds, retry_after */
  struct s3_creds creds;
  time_t retry_after; /* no refresh attempt before this */
  /* Immutable after creds_provider_new. */
  bool from_imds; /* creds expire and can be refreshed */
  unsigned imds_timeout_s;
  char imds_endpoint[512];
  char source[PATH_MAX + 256];
};

/* ---- Small helpers ---- */

static void
free_secret (char *s)
{
  if (s)
    {
      explicit_bzero (s, strlen (s));
      free (s);
    }
}

static const char *
getenv_set (const char *name)
{
  const char *v = getenv (name);

  return v && *v ? v : NULL;
}

static bool
nonempty (const char *s)
{
  return s && *s;
}

static char *
trim (char *s)
{
  char *e;

  while (isspace ((unsigned char)*s))
    s++;
  e = s + strlen (s);
  while (e > s && isspace ((unsigned char)e[-1]))
    e--;
  *e = '\0';
  return s;
}

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

static int
set_creds (struct s3_creds *c, const char *access_key, const char *secret_key,
           const char *session_token, const char *where,
           struct s3bd_error *err)
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

/* ---- The shared files' parser ---- */

int
ini_parse (const char *text, size_t len, const char *filename, ini_fn fn,
           void *arg, struct s3bd_error *err)
{
  const char *name = filename ? filename : "(text)";
  const char *section = NULL;
  const char *parent = NULL; /* a key with an empty value */
  bool parent_used = false;  /* ... that has had sub-keys */
  const char *nul;
  char *buf, *line, *next, *end;
  int lineno = 0;
  int r = 0;

  /* Line numbers are ints; real files are far smaller. */
  if (len > INT_MAX)
    return s3bd_fail (err, S3BD_EINVAL, "%s: too large", name);
  nul = memchr (text, '\0', len);
  if (nul)
    {
      const char *q;

      lineno = 1;
      for (q = text; q < nul; q++)
        lineno += *q == '\n';
      return s3bd_fail (err, S3BD_EINVAL, "%s line %d: NUL byte", name,
                        lineno);
    }

  buf = malloc (len + 1);
  if (buf == NULL)
    return s3bd_fail (err, S3BD_ENOMEM, "%s: out of memory", name);
  memcpy (buf, text, len);
  buf[len] = '\0';

  line = buf;
  if (len >= 3 && memcmp (buf, "\xef\xbb\xbf", 3) == 0)
    line += 3; /* a UTF-8 byte order mark */

  for (; line < buf + len; line = next)
    {
      char *p, *eq, *key, *value;
      bool indented;

      end = memchr (line, '\n', (size_t)(buf + len - line));
      if (end)
        next = end + 1;
      else
        next = end = buf + len;
      *end = '\0';
      lineno++;

      indented = *line == ' ' || *line == '\t';
      p = trim (line);
      if (*p == '\0' || *p == '#' || *p == ';')
        continue; /* comments do not end a sub-section */

      /* Anything but an indented key ends a sub-section; one without
       * sub-keys was a plain key with an empty value.
       */
      if (parent && !(indented && *p != '['))
        {
          if (!parent_used)
            r = fn (arg, section, parent, "");
          parent = NULL;
          if (r != 0)
            break;
        }

      if (*p == '[')
        {
          char *close = strchr (p, ']');
          char *rest;

          if (close == NULL)
            {
              r = s3bd_fail (err, S3BD_EINVAL, "%s line %d: unterminated '['",
                             name, lineno);
              break;
            }
          rest = close + 1;
          while (isspace ((unsigned char)*rest))
            rest++;
          if (*rest != '\0' && *rest != '#' && *rest != ';')
            {
              r = s3bd_fail (err, S3BD_EINVAL,
                             "%s line %d: unexpected text after ']'", name,
                             lineno);
              break;
            }
          *close = '\0';
          section = trim (p + 1);
          if (*section == '\0')
            {
              r = s3bd_fail (err, S3BD_EINVAL,
                             "%s line %d: empty section name", name, lineno);
              break;
            }
          continue;
        }

      eq = strchr (p, '=');
      if (eq == NULL || eq == p)
        {
          r = s3bd_fail (err, S3BD_EINVAL,
                         "%s line %d: expected 'key = value'", name, lineno);
          break;
        }
      *eq = '\0';
      key = trim (p);
      value = trim (eq + 1);
      if (section == NULL)
        {
          r = s3bd_fail (err, S3BD_EINVAL,
                         "%s line %d: key before any [section]", name, lineno);
          break;
        }

      if (parent)
        {
          /* Both come from buf, so the sum cannot overflow. */
          size_t n = strlen (parent) + 1 + strlen (key) + 1;
          char *joined = malloc (n);

          if (joined == NULL)
            {
              r = s3bd_fail (err, S3BD_ENOMEM, "%s: out of memory", name);
              break;
            }
          snprintf (joined, n, "%s.%s", parent, key);
          parent_used = true;
          r = fn (arg, section, joined, value);
          free (joined);
        }
      else if (*value == '\0')
        {
          parent = key; /* perhaps a sub-section: see next line */
          parent_used = false;
        }
      else
        r = fn (arg, section, key, value);
      if (r != 0)
        break;
    }

  if (r == 0 && parent && !parent_used)
    r = fn (arg, section, parent, "");

  explicit_bzero (buf, len);
  free (buf);
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

/* ---- Shared files ---- */

/* Reads a whole file.  Returns 1 with a NUL-terminated *bufp (wipe before
 * freeing: it may hold secrets), 0 when the file does not exist, -1 on
 * error.  Not limited to regular files: /dev/null is a common way to say
 * "no file".
 */
static int
read_shared_file (const char *path, char **bufp, size_t *lenp,
                  struct s3bd_error *err)
{
  size_t len = 0, cap = 4096;
  char *buf;
  int fd;

  *bufp = NULL;
  *lenp = 0;
  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    {
      if (errno == ENOENT || errno == ENOTDIR)
        return 0;
      return s3bd_fail (err, S3BD_EIO, "%s: %s", path, strerror (errno));
    }
  buf = malloc (cap + 1);
  if (buf == NULL)
    goto nomem;
  for (;;)
    {
      ssize_t n;

      if (len == cap)
        {
          char *bigger;

          if (cap >= MAX_SHARED_FILE)
            {
              s3bd_fail (err, S3BD_EINVAL, "%s: larger than %d bytes", path,
                         MAX_SHARED_FILE);
              goto fail;
            }
          /* Grow by copying, so that no stale copy of a secret is left
           * behind by realloc.
           */
          bigger = malloc (cap * 2 + 1);
          if (bigger == NULL)
            goto nomem;
          memcpy (bigger, buf, len);
          explicit_bzero (buf, len);
          free (buf);
          buf = bigger;
          cap *= 2;
        }
      n = read (fd, buf + len, cap - len);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          s3bd_fail (err, S3BD_EIO, "%s: %s", path, strerror (errno));
          goto fail;
        }
      if (n == 0)
        break;
      len += (size_t)n;
    }
  close (fd);
  buf[len] = '\0';
  *bufp = buf;
  *lenp = len;
  return 1;

nomem:
  s3bd_fail (err, S3BD_ENOMEM, "%s: out of memory", path);
fail:
  if (buf)
    {
      explicit_bzero (buf, len);
      free (buf);
    }
  close (fd);
  return -1;
}

/* The path of a shared file: the environment variable (with "~/"
 * expanded, as botocore does), else ~/.aws/LEAF.  An empty path means
 * there is no file (HOME is unset).
 */
static int
shared_file_path (const char *envname, const char *leaf, char *path,
                  size_t size, struct s3bd_error *err)
{
  const char *v = getenv_set (envname);
  const char *home = getenv_set ("HOME");
  int n;

  path[0] = '\0';
  if (v && strncmp (v, "~/", 2) == 0 && home)
    n = snprintf (path, size, "%s/%s", home, v + 2);
  else if (v)
    n = snprintf (path, size, "%s", v);
  else if (home)
    n = snprintf (path, size, "%s/.aws/%s", home, leaf);
  else
    return 0;
  if (n < 0 || (size_t)n >= size)
    {
      path[0] = '\0';
      return s3bd_fail (err, S3BD_EINVAL, "%s: path too long", envname);
    }
  return 0;
}

/* Credentials files name the profile ("[dev]"); config files prefix it
 * ("[profile dev]"), except for the default profile, which may be either.
 */
static bool
section_is_profile (const char *section, const char *profile, bool config_file)
{
  const char *p;

  if (!config_file || strcmp (section, "default") == 0)
    return strcmp (section, profile) == 0;
  if (strncmp (section, "profile", 7) != 0
      || !isspace ((unsigned char)section[7]))
    return false;
  for (p = section + 7; isspace ((unsigned char)*p); p++)
    ;
  return strcmp (p, profile) == 0;
}

/* Profile keys that name a credential source s3bd does not implement. */
static const char *const unsupported_keys[] = {
  "role_arn",      "credential_process",      "sso_session",
  "sso_start_url", "web_identity_token_file",
};

struct profile_scan
{
  const char *profile;
  bool config_file;
  bool found; /* the section exists */
  bool nomem;
  char *access_key;
  char *secret_key;
  char *session_token;
  const char *unsupported; /* from unsupported_keys */
};

static int
profile_scan_cb (void *arg, const char *section, const char *key,
                 const char *value)
{
  struct profile_scan *ps = arg;
  char **slot;
  size_t i;

  if (!section_is_profile (section, ps->profile, ps->config_file))
    return 0;
  ps->found = true;
  /* configparser lower-cases keys, so the AWS tools accept any case. */
  if (strcasecmp (key, "aws_access_key_id") == 0)
    slot = &ps->access_key;
  else if (strcasecmp (key, "aws_secret_access_key") == 0)
    slot = &ps->secret_key;
  else if (strcasecmp (key, "aws_session_token") == 0)
    slot = &ps->session_token;
  else
    {
      for (i = 0; i < sizeof unsupported_keys / sizeof *unsupported_keys; i++)
        if (strcasecmp (key, unsupported_keys[i]) == 0 && !ps->unsupported)
          ps->unsupported = unsupported_keys[i];
      return 0;
    }
  free_secret (*slot);
  *slot = *value ? strdup (value) : NULL;
  if (*value && *slot == NULL)
    {
      ps->nomem = true;
      return -1;
    }
  return 0;
}

static void
profile_scan_free (struct profile_scan *ps)
{
  free_secret (ps->access_key);
  free_secret (ps->secret_key);
  free_secret (ps->session_token);
  ps->access_key = ps->secret_key = ps->session_token = NULL;
}

static int
profile_scan_file (const char *path, struct profile_scan *ps,
                   struct s3bd_error *err)
{
  char *buf;
  size_t len;
  int r;

  if (path[0] == '\0')
    return 0;
  r = read_shared_file (path, &buf, &len, err);
  if (r <= 0)
    return r;
  r = ini_parse (buf, len, path, profile_scan_cb, ps, err);
  explicit_bzero (buf, len);
  free (buf);
  if (r != 0 && ps->nomem)
    return s3bd_fail (err, S3BD_ENOMEM, "%s: out of memory", path);
  return r != 0 ? -1 : 0;
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

struct config_lookup
{
  const char *profile;
  const char *name;
  char *value;
  bool nomem;
};

static int
config_lookup_cb (void *arg, const char *section, const char *key,
                  const char *value)
{
  struct config_lookup *cl = arg;

  if (!section_is_profile (section, cl->profile, true)
      || strcasecmp (key, cl->name) != 0)
    return 0;
  free_secret (cl->value); /* the last one wins */
  cl->value = strdup (value);
  if (cl->value == NULL)
    {
      cl->nomem = true;
      return -1;
    }
  return 0;
}

char *
aws_config_lookup (const char *profile, const char *name,
                   struct s3bd_error *err)
{
  struct config_lookup cl = { .name = name };
  char path[PATH_MAX];
  char *buf;
  size_t len;
  int r;

  s3bd_error_clear (err);
  cl.profile = nonempty (profile) ? profile : getenv_set ("AWS_PROFILE");
  if (cl.profile == NULL)
    cl.profile = "default";
  r = shared_file_path ("AWS_CONFIG_FILE", "config", path, sizeof path, err);
  if (r < 0 || path[0] == '\0')
    return NULL;
  r = read_shared_file (path, &buf, &len, err);
  if (r <= 0)
    return NULL;
  r = ini_parse (buf, len, path, config_lookup_cb, &cl, err);
  explicit_bzero (buf, len);
  free (buf);
  if (r != 0)
    {
      if (cl.nomem)
        s3bd_fail (err, S3BD_ENOMEM, "%s: out of memory", path);
      free_secret (cl.value);
      return NULL;
    }
  return cl.value;
}

/* ---- Instance metadata ---- */

struct imds
{
  CURL *curl;
  const char *endpoint;
  long timeout_ms;
  bool have_token;
  bool token_retried; /* a 401 made us fetch a second token */
  long token_status;  /* of the last token request */
  char token[1024];
  long status; /* of the last request */
  bool too_big;
  size_t len;
  char body[IMDS_MAX_BODY + 1];
  char curl_err[CURL_ERROR_SIZE];
};

static size_t
imds_write_cb (char *data, size_t size, size_t nmemb, void *arg)
{
  struct imds *m = arg;
  size_t n = size * nmemb; /* curl documents size as always 1 */

  if (n > IMDS_MAX_BODY - m->len)
    {
      m->too_big = true;
      return 0;
    }
  memcpy (m->body + m->len, data, n);
  m->len += n;
  return n;
}

static bool
add_header (struct curl_slist **list, const char *header)
{
  struct curl_slist *l = curl_slist_append (*list, header);

  if (l == NULL)
    return false;
  *list = l;
  return true;
}

static size_t
imds_read_cb (char *data, size_t size, size_t nmemb, void *arg)
{
  return 0; /* the token PUT has an empty body */
}

/* One request; a response with any status is a success here.  Returns -1
 * with err set when no response arrived.
 */
static int
imds_request (struct imds *m, bool put, const char *path,
              struct s3bd_error *err)
{
  struct curl_slist *headers = NULL;
  bool ok = true;
  char url[sizeof ((struct creds_provider *)0)->imds_endpoint + 256];
  char token_header[sizeof m->token + 64];
  CURLcode rc;
  int n;

  n = snprintf (url, sizeof url, "%s%s", m->endpoint, path);
  if (n < 0 || (size_t)n >= sizeof url)
    return s3bd_fail (err, S3BD_EINVAL, "%s: URL too long", m->endpoint);

  curl_easy_reset (m->curl); /* keeps the connection */
  curl_easy_setopt (m->curl, CURLOPT_URL, url);
  curl_easy_setopt (m->curl, CURLOPT_NOPROXY, "*");
  curl_easy_setopt (m->curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt (m->curl, CURLOPT_CONNECTTIMEOUT_MS, m->timeout_ms);
  curl_easy_setopt (m->curl, CURLOPT_TIMEOUT_MS, m->timeout_ms);
  curl_easy_setopt (m->curl, CURLOPT_WRITEFUNCTION, imds_write_cb);
  curl_easy_setopt (m->curl, CURLOPT_WRITEDATA, m);
  curl_easy_setopt (m->curl, CURLOPT_ERRORBUFFER, m->curl_err);
#if LIBCURL_VERSION_NUM >= 0x075500
  curl_easy_setopt (m->curl, CURLOPT_PROTOCOLS_STR, "http,https");
#endif

  if (put)
    {
      curl_easy_setopt (m->curl, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt (m->curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)0);
      curl_easy_setopt (m->curl, CURLOPT_READFUNCTION, imds_read_cb);
      ok = add_header (&headers, "X-aws-ec2-metadata-token-ttl-seconds: 21600")
           && add_header (&headers, "Expect:");
    }
  else if (m->have_token)
    {
      snprintf (token_header, sizeof token_header,
                "X-aws-ec2-metadata-token: %s", m->token);
      ok = add_header (&headers, token_header);
      explicit_bzero (token_header, sizeof token_header);
    }
  if (!ok)
    {
      curl_slist_free_all (headers);
      return s3bd_fail (err, S3BD_ENOMEM, "%s: out of memory", url);
    }
  curl_easy_setopt (m->curl, CURLOPT_HTTPHEADER, headers);

  m->len = 0;
  m->too_big = false;
  m->status = 0;
  m->curl_err[0] = '\0';
  rc = curl_easy_perform (m->curl);
  curl_easy_setopt (m->curl, CURLOPT_HTTPHEADER, NULL);
  curl_slist_free_all (headers);
  m->body[m->len] = '\0';
  if (m->too_big)
    return s3bd_fail (err, S3BD_EPROTO, "%s: response larger than %d bytes",
                      url, IMDS_MAX_BODY);
  if (rc != CURLE_OK)
    return s3bd_fail (err, S3BD_ENET, "%s: %s", url,
                      m->curl_err[0] ? m->curl_err : curl_easy_strerror (rc));
  curl_easy_getinfo (m->curl, CURLINFO_RESPONSE_CODE, &m->status);
  return 0;
}

/* IMDSv2: a session token for the requests that follow.  A 403, 404 or 405
 * means the service (or a proxy in front of it) does not do tokens: go on
 * without, like the AWS SDKs, and let the service answer 401 if it does
 * want one.
 */
static int
imds_get_token (struct imds *m, struct s3bd_error *err)
{
  char *tok;
  size_t i;

  explicit_bzero (m->token, sizeof m->token);
  m->have_token = false;
  if (imds_request (m, true, IMDS_TOKEN_PATH, err) < 0)
    return -1;
  m->token_status = m->status;
  if (m->status == 403 || m->status == 404 || m->status == 405)
    return 0;
  if (m->status != 200)
    return s3bd_fail (err, S3BD_EPROTO, "%s%s: HTTP %ld", m->endpoint,
                      IMDS_TOKEN_PATH, m->status);
  tok = trim (m->body);
  for (i = 0; tok[i]; i++)
    if ((unsigned char)tok[i] <= ' ' || (unsigned char)tok[i] >= 0x7f)
      break;
  if (i == 0 || tok[i] != '\0' || i >= sizeof m->token)
    return s3bd_fail (err, S3BD_EPROTO, "%s%s: malformed token", m->endpoint,
                      IMDS_TOKEN_PATH);
  memcpy (m->token, tok, i + 1);
  explicit_bzero (m->body, m->len);
  m->have_token = true;
  return 0;
}

/* A GET with the token.  A 401 to a request with a token means the
 * token expired: fetch another and retry, once.
 */
static int
imds_get (struct imds *m, const char *path, struct s3bd_error *err)
{
  if (imds_request (m, false, path, err) < 0)
    return -1;
  if (m->status == 401 && m->have_token && !m->token_retried)
    {
      m->token_retried = true;
      if (imds_get_token (m, err) < 0)
        return -1;
      if (!m->have_token)
        m->status = 401;
      else if (imds_request (m, false, path, err) < 0)
        return -1;
    }
  if (m->status == 401)
    {
      if (m->have_token)
        return s3bd_fail (err, S3BD_EAUTH,
                          "%s%s: HTTP 401: the IMDSv2 token was refused",
                          m->endpoint, path);
      return s3bd_fail (err, S3BD_EAUTH,
                        "%s%s: HTTP 401: an IMDSv2 token is required, but the "
                        "token request returned HTTP %ld",
                        m->endpoint, path, m->token_status);
    }
  return 0;
}

static const char *
json_string (json_object *obj, const char *name)
{
  json_object *v;

  if (!json_object_object_get_ex (obj, name, &v)
      || !json_object_is_type (v, json_type_string))
    return NULL;
  return json_object_get_string (v);
}

static int
imds_parse_creds (struct imds *m, const char *url, struct s3_creds *c,
                  struct s3bd_error *err)
{
  static const char *const fields[] = {
    "AccessKeyId",
    "SecretAccessKey",
    "Token",
    "Expiration",
  };
  const char *v[4];
  const char *code;
  json_object *obj;
  int64_t expiration;
  size_t i;
  int r = -1;

  obj = json_tokener_parse (m->body);
  if (obj == NULL || !json_object_is_type (obj, json_type_object))
    {
      s3bd_fail (err, S3BD_EPROTO,
                 "%s: malformed credentials (not a JSON object)", url);
      goto out;
    }
  code = json_string (obj, "Code");
  if (code && strcmp (code, "Success") != 0)
    {
      s3bd_fail (err, S3BD_ECREDS, "%s: Code is \"%.64s\", not \"Success\"",
                 url, code);
      goto out;
    }
  for (i = 0; i < 4; i++)
    {
      v[i] = json_string (obj, fields[i]);
      if (v[i] == NULL)
        {
          s3bd_fail (err, S3BD_EPROTO, "%s: credentials without %s", url,
                     fields[i]);
          goto out;
        }
    }
  if (parse_iso8601 (v[3], &expiration, NULL) < 0)
    {
      s3bd_fail (err, S3BD_EPROTO, "%s: malformed Expiration", url);
      goto out;
    }
  if (set_creds (c, v[0], v[1], v[2], url, err) < 0)
    goto out;
  c->expiration = expiration;
  r = 0;

out:
  if (obj)
    {
      /* json-c's strings hold the secret: wipe what we can reach. */
      for (i = 0; i < 3; i++)
        {
          json_object *s;

          if (json_object_object_get_ex (obj, fields[i], &s)
              && json_object_is_type (s, json_type_string))
            explicit_bzero ((char *)json_object_get_string (s),
                            (size_t)json_object_get_string_len (s));
        }
      json_object_put (obj);
    }
  return r;
}

/* Role names are [A-Za-z0-9+=,.@_-]{1,64}; anything else would change the
 * request path.
 */
static bool
valid_role (const char *role)
{
  size_t i;

  for (i = 0; role[i]; i++)
    if (!isalnum ((unsigned char)role[i])
        && strchr ("+=,.@_-", role[i]) == NULL)
      return false;
  return i > 0 && i <= 64;
}

/* Step 4: token, role name, the role's credentials. */
static int
imds_fetch (const char *endpoint, unsigned timeout_s, struct s3_creds *c,
            char *role, size_t role_size, struct s3bd_error *err)
{
  char path[sizeof IMDS_ROLE_PATH + 64];
  char url[sizeof ((struct creds_provider *)0)->imds_endpoint + sizeof path];
  struct imds *m;
  char *name, *nl;
  int r = -1;

  m = calloc (1, sizeof *m);
  if (m == NULL)
    return s3bd_fail (err, S3BD_ENOMEM, "out of memory");
  m->endpoint = endpoint;
  if (timeout_s > IMDS_MAX_TIMEOUT_S)
    timeout_s = IMDS_MAX_TIMEOUT_S;
  m->timeout_ms = (long)timeout_s * 1000;
  m->curl = curl_easy_init ();
  if (m->curl == NULL)
    {
      s3bd_fail (err, S3BD_ENOMEM, "curl_easy_init failed");
      goto out;
    }

  if (imds_get_token (m, err) < 0 || imds_get (m, IMDS_ROLE_PATH, err) < 0)
    goto out;
  if (m->status == 404)
    {
      s3bd_fail (err, S3BD_ECREDS,
                 "%s%s: HTTP 404: no IAM role attached to the instance",
                 endpoint, IMDS_ROLE_PATH);
      goto out;
    }
  if (m->status != 200)
    {
      s3bd_fail (err, S3BD_EPROTO, "%s%s: HTTP %ld", endpoint, IMDS_ROLE_PATH,
                 m->status);
      goto out;
    }
  nl = strchr (m->body, '\n');
  if (nl)
    *nl = '\0';
  name = trim (m->body);
  if (*name == '\0')
    {
      s3bd_fail (err, S3BD_ECREDS,
                 "%s%s: no IAM role attached to the instance", endpoint,
                 IMDS_ROLE_PATH);
      goto out;
    }
  if (!valid_role (name))
    {
      s3bd_fail (err, S3BD_EPROTO, "%s%s: malformed role name", endpoint,
                 IMDS_ROLE_PATH);
      goto out;
    }
  snprintf (role, role_size, "%s", name);
  snprintf (path, sizeof path, "%s%s", IMDS_ROLE_PATH, name);
  snprintf (url, sizeof url, "%s%s", endpoint, path);

  if (imds_get (m, path, err) < 0)
    goto out;
  if (m->status != 200)
    {
      s3bd_fail (err, m->status == 404 ? S3BD_ECREDS : S3BD_EPROTO,
                 "%s: HTTP %ld", url, m->status);
      goto out;
    }
  r = imds_parse_creds (m, url, c, err);

out:
  if (m->curl)
    curl_easy_cleanup (m->curl);
  explicit_bzero (m, sizeof *m);
  free (m);
  return r;
}

static bool
imds_disabled (void)
{
  const char *v = getenv ("AWS_EC2_METADATA_DISABLED");

  return v && strcasecmp (v, "true") == 0;
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
  r = shared_file_path ("AWS_SHARED_CREDENTIALS_FILE", "credentials",
                        cred_path, sizeof cred_path, err);
  if (r == 0)
    r = shared_file_path ("AWS_CONFIG_FILE", "config", conf_path,
                          sizeof conf_path, err);
  if (r < 0)
    return -1;
  r = creds_from_file (p, cred_path, profile, false, &found, &unsupported,
                       err);
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
    append (tried, sizeof tried,
            "environment (skipped for a named profile), ");
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
creds_provider_new (const struct creds_config *cfg,
                    struct creds_provider **out, struct s3bd_error *err)
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
