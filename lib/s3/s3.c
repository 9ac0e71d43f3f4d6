/* s3bd: the S3 client: configuration, addressing, and the blocking
 * operations (HEAD, ranged GET, PUT, create bucket, presign).  Transfers
 * run on the engine (engine.c); listings are in list.c.
 */
#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "s3bd/s3.h"
#include "s3bd/sigv4.h"
#include "s3int.h"
#include "common/strbuf.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void
curl_init_once (void)
{
  curl_global_init (CURL_GLOBAL_DEFAULT);
}

static char *
env_nonempty (const char *name)
{
  const char *v = getenv (name);

  return v && *v ? strdup (v) : NULL;
}

/* A setting from explicit config, then environment variables, then the
 * profile in the AWS config file.  *out is NULL when none has it.
 */
static int
resolve_setting (const char *explicit, const char *const *envs,
                 const char *profile, const char *config_name, char **out,
                 struct s3bd_error *err)
{
  *out = NULL;
  if (explicit && *explicit)
    *out = strdup (explicit);
  for (size_t i = 0; *out == NULL && envs[i]; i++)
    *out = env_nonempty (envs[i]);
  if (*out == NULL)
    {
      s3bd_error_clear (err);
      *out = aws_config_lookup (profile, config_name, err);
      if (*out == NULL && err && err->code != S3BD_OK)
        return -1;
    }
  return 0;
}

/* S3 bucket names that can be a DNS label under TLS: lower case letters,
 * digits and '-', 3 to 63 long.  Names with dots break TLS host matching
 * on virtual-hosted endpoints, so they go path-style.
 */
static bool
dns_safe_bucket (const char *b)
{
  size_t n = strlen (b);

  if (n < 3 || n > 63 || b[0] == '-' || b[n - 1] == '-')
    return false;
  for (size_t i = 0; i < n; i++)
    if (!(islower ((unsigned char)b[i]) || isdigit ((unsigned char)b[i])
          || b[i] == '-'))
      return false;
  return true;
}

static int
parse_endpoint (struct s3_client *c, struct s3bd_error *err)
{
  CURLU *u = curl_url ();
  char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
  int ret = -1;

  if (u == NULL)
    return s3bd_fail (err, S3BD_ENOMEM, "out of memory");
  if (curl_url_set (u, CURLUPART_URL, c->endpoint, 0) != CURLUE_OK
      || curl_url_get (u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK
      || curl_url_get (u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
    {
      s3bd_fail (err, S3BD_EINVAL,
                 "endpoint %s: not a URL (expected http://host[:port] or "
                 "https://host[:port])",
                 c->endpoint);
      goto out;
    }
  if (strcmp (scheme, "http") != 0 && strcmp (scheme, "https") != 0)
    {
      s3bd_fail (err, S3BD_EINVAL,
                 "endpoint %s: scheme must be http or "
                 "https",
                 c->endpoint);
      goto out;
    }
  if (curl_url_get (u, CURLUPART_PATH, &path, 0) == CURLUE_OK
      && strcmp (path, "/") != 0 && path[0] != '\0')
    {
      s3bd_fail (err, S3BD_EINVAL, "endpoint %s: must not have a path",
                 c->endpoint);
      goto out;
    }
  c->scheme = strdup (scheme);
  if (curl_url_get (u, CURLUPART_PORT, &port, 0) == CURLUE_OK)
    {
      struct strbuf b = STRBUF_INIT;

      strbuf_addf (&b, "%s:%s", host, port);
      c->host = strbuf_detach (&b);
    }
  else
    c->host = strdup (host);
  if (c->scheme == NULL || c->host == NULL)
    {
      s3bd_fail (err, S3BD_ENOMEM, "out of memory");
      goto out;
    }
  {
    size_t n = strlen (host);
    const char *suffix = ".amazonaws.com";
    size_t sn = strlen (suffix);

    c->aws_host = n > sn && strcasecmp (host + n - sn, suffix) == 0;
  }
  ret = 0;

out:
  curl_free (scheme);
  curl_free (host);
  curl_free (port);
  curl_free (path);
  curl_url_cleanup (u);
  return ret;
}

int
s3_client_new (const struct s3_config *cfg, struct s3_client **out,
               struct s3bd_error *err)
{
  static const char *const region_env[]
      = { "AWS_REGION", "AWS_DEFAULT_REGION", NULL };
  static const char *const endpoint_env[]
      = { "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", NULL };
  static const char *const no_env[] = { NULL };
  struct s3_client *c;
  char *style = NULL;
  size_t n;

  *out = NULL;
  pthread_once (&curl_once, curl_init_once);
  c = calloc (1, sizeof *c);
  if (c == NULL)
    return s3bd_fail (err, S3BD_ENOMEM, "out of memory");

  if (resolve_setting (cfg->region, region_env, cfg->creds.profile, "region",
                       &c->region, err)
      == -1)
    goto fail;
  if (c->region == NULL && (c->region = strdup ("us-east-1")) == NULL)
    goto nomem;
  if (resolve_setting (cfg->endpoint, endpoint_env, cfg->creds.profile,
                       "endpoint_url", &c->endpoint, err)
      == -1)
    goto fail;
  if (c->endpoint == NULL)
    {
      struct strbuf b = STRBUF_INIT;

      strbuf_addf (&b, "https://s3.%s.amazonaws.com", c->region);
      if ((c->endpoint = strbuf_detach (&b)) == NULL)
        goto nomem;
    }
  n = strlen (c->endpoint);
  while (n > 0 && c->endpoint[n - 1] == '/')
    c->endpoint[--n] = '\0';
  if (parse_endpoint (c, err) == -1)
    goto fail;

  c->addressing = cfg->addressing;
  if (c->addressing == S3_ADDR_AUTO)
    {
      if (resolve_setting (NULL, no_env, cfg->creds.profile,
                           "s3.addressing_style", &style, err)
          == -1)
        goto fail;
      if (style && strcmp (style, "path") == 0)
        c->addressing = S3_ADDR_PATH;
      else if (style && strcmp (style, "virtual") == 0)
        c->addressing = S3_ADDR_VIRTUAL;
      free (style);
    }

  c->no_verify_tls = cfg->no_verify_tls;
  if (resolve_setting (cfg->ca_file,
                       (const char *const[]){ "AWS_CA_BUNDLE", NULL },
                       cfg->creds.profile, "ca_bundle", &c->ca_file, err)
      == -1)
    goto fail;
  c->connect_timeout_ms
      = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 5000;
  c->stall_timeout_s = cfg->stall_timeout_s ? cfg->stall_timeout_s : 5;
  c->max_connections = cfg->max_connections ? cfg->max_connections : 64;
  /* The AWS SDKs' standard mode, but with no count by default: the
   * deadline and the quota bound the retries.
   */
  c->retry.max_attempts = cfg->max_attempts ? cfg->max_attempts : UINT_MAX;
  c->retry.base_ms = cfg->retry_base_ms ? cfg->retry_base_ms : 100;
  c->retry.throttle_base_ms
      = cfg->retry_throttle_base_ms ? cfg->retry_throttle_base_ms : 500;
  c->retry.cap_ms = cfg->retry_cap_ms ? cfg->retry_cap_ms : 20000;
  c->retry.budget_ms = cfg->retry_budget_ms ? cfg->retry_budget_ms : 60000;
  retry_quota_init (&c->quota,
                    cfg->retry_quota ? cfg->retry_quota : RETRY_QUOTA_TOKENS);
  c->log = cfg->verbose ? cfg->log : NULL;

  if (creds_provider_new (&cfg->creds, &c->creds, err) == -1)
    goto fail;
  *out = c;
  return 0;

nomem:
  s3bd_fail (err, S3BD_ENOMEM, "out of memory");
fail:
  s3_client_free (c);
  return -1;
}

void
s3_client_free (struct s3_client *c)
{
  if (c == NULL)
    return;
  s3_engine_free (c->engine);
  creds_provider_free (c->creds);
  free (c->endpoint);
  free (c->scheme);
  free (c->host);
  free (c->region);
  free (c->ca_file);
  free (c);
}

const char *
s3_client_endpoint (const struct s3_client *c)
{
  return c->endpoint;
}

const char *
s3_client_region (const struct s3_client *c)
{
  return c->region;
}

struct creds_provider *
s3_client_creds (struct s3_client *c)
{
  return c->creds;
}

struct s3_engine *
s3_client_engine (struct s3_client *c)
{
  if (c->engine == NULL
      && s3_engine_new (c, c->max_connections, &c->engine, NULL) == -1)
    return NULL;
  return c->engine;
}

static bool
virtual_hosted (const struct s3_client *c, const char *bucket)
{
  if (c->addressing == S3_ADDR_VIRTUAL)
    return true;
  if (c->addressing == S3_ADDR_PATH)
    return false;
  return c->aws_host && dns_safe_bucket (bucket);
}

int
s3_request_target (const struct s3_client *c, const struct s3_request *r,
                   char **url, char **host, char **path)
{
  struct strbuf u = STRBUF_INIT, h = STRBUF_INIT, p = STRBUF_INIT;
  const char *key = r->key ? r->key : "";
  char *enc;

  if (r->bucket && virtual_hosted (c, r->bucket))
    {
      strbuf_addf (&h, "%s.%s", r->bucket, c->host);
      strbuf_addf (&p, "/%s", key);
    }
  else
    {
      strbuf_adds (&h, c->host);
      if (r->bucket)
        strbuf_addf (&p, "/%s/%s", r->bucket, key);
      else
        strbuf_adds (&p, "/");
    }
  if (!strbuf_ok (&p) || (enc = sigv4_uri_encode (p.s, p.len, true)) == NULL)
    goto fail;
  strbuf_addf (&u, "%s://%s%s", c->scheme, h.s ? h.s : "", enc);
  free (enc);
  for (size_t i = 0; i < r->nparams; i++)
    {
      const char *v = r->params[i].value ? r->params[i].value : "";
      char *n = sigv4_uri_encode (r->params[i].name, strlen (r->params[i].name),
                                  false);
      char *ev = sigv4_uri_encode (v, strlen (v), false);

      if (n && ev)
        strbuf_addf (&u, "%c%s=%s", i ? '&' : '?', n, ev);
      else
        u.failed = true;
      free (n);
      free (ev);
    }
  *url = strbuf_detach (&u);
  *host = strbuf_detach (&h);
  *path = strbuf_detach (&p);
  if (*url && *host && *path)
    return 0;
  free (*url);
  free (*host);
  free (*path);
  *url = *host = *path = NULL;
  return -1;

fail:
  strbuf_free (&u);
  strbuf_free (&h);
  strbuf_free (&p);
  return -1;
}

void
s3_request_describe (const struct s3_request *r, char *buf, size_t n)
{
  const char *m = r->method == S3_GET    ? "GET"
                  : r->method == S3_HEAD ? "HEAD"
                                         : "PUT";
  const char *query = "";

  for (size_t i = 0; i < r->nparams; i++)
    if (strcmp (r->params[i].name, "list-type") == 0)
      {
        m = "LIST";
        for (size_t j = 0; j < r->nparams; j++)
          if (strcmp (r->params[j].name, "prefix") == 0)
            query = r->params[j].value;
      }
  if (r->ranged)
    snprintf (buf, n, "%s s3://%s/%s bytes %" PRIu64 "-%" PRIu64, m,
              r->bucket ? r->bucket : "", r->key ? r->key : "", r->range_off,
              r->range_off + r->range_len - 1);
  else
    snprintf (buf, n, "%s s3://%s/%s%s", m, r->bucket ? r->bucket : "",
              r->key ? r->key : "", query);
}

void
s3_request_get_range (struct s3_request *r, const char *bucket, const char *key,
                      uint64_t off, uint64_t len, const char *etag, void *buf)
{
  memset (r, 0, sizeof *r);
  r->method = S3_GET;
  r->bucket = bucket;
  r->key = key;
  r->ranged = true;
  r->range_off = off;
  r->range_len = len;
  r->if_match = etag;
  r->buf = buf;
  r->buf_len = (size_t)len;
}

/* Runs one request on the client's engine; copies its error. */
static int
perform_one (struct s3_client *c, struct s3_request *r, struct s3bd_error *err)
{
  if (s3_perform (c, &r, 1) == -1)
    {
      if (err)
        *err = r->err;
      return -1;
    }
  return 0;
}

int
s3_head (struct s3_client *c, const char *bucket, const char *key,
         struct s3_object_info *out, struct s3bd_error *err)
{
  struct s3_request r = { .method = S3_HEAD, .bucket = bucket, .key = key };
  struct tm tm;

  if (perform_one (c, &r, err) == -1)
    {
      /* A HEAD response has no body, so a 403 comes without the S3 error
       * code that tells wrong credentials from a denied access: ask again
       * with a one-byte GET to get the code into the message.
       */
      if (r.status == 403 && err)
        {
          char byte;
          struct s3_request g;

          s3_request_get_range (&g, bucket, key, 0, 1, NULL, &byte);
          if (perform_one (c, &g, err) == 0)
            s3bd_fail (err, S3BD_EDENIED,
                       "HEAD s3://%s/%s: access denied "
                       "(HTTP 403), though GET is allowed",
                       bucket, key);
        }
      return -1;
    }
  out->size = r.content_length;
  memcpy (out->etag, r.etag, sizeof out->etag);
  out->mtime = 0;
  memset (&tm, 0, sizeof tm);
  /* Last-Modified is an HTTP date: "Wed, 25 Nov 2026 23:36:13 GMT". */
  if (strptime (r.last_modified, "%a, %d %b %Y %H:%M:%S GMT", &tm))
    out->mtime = (int64_t)timegm (&tm);
  s3_request_release (&r);
  return 0;
}

int
s3_get (struct s3_client *c, const char *bucket, const char *key, uint64_t off,
        uint64_t len, const char *etag, void *buf, size_t chunk,
        struct s3bd_error *err)
{
  struct s3_request *reqs = NULL, **ptrs = NULL;
  uint64_t n;
  int ret = -1;

  if (len == 0)
    return 0;
  if (chunk == 0)
    chunk = 8 << 20;
  n = (len + chunk - 1) / chunk;
  if (n > SIZE_MAX / sizeof *reqs)
    return s3bd_fail (err, S3BD_EINVAL, "range too large");
  reqs = calloc ((size_t)n, sizeof *reqs);
  ptrs = calloc ((size_t)n, sizeof *ptrs);
  if (reqs == NULL || ptrs == NULL)
    {
      s3bd_fail (err, S3BD_ENOMEM, "out of memory");
      goto out;
    }
  for (uint64_t i = 0; i < n; i++)
    {
      uint64_t o = i * chunk;
      uint64_t l = len - o < chunk ? len - o : chunk;

      s3_request_get_range (&reqs[i], bucket, key, off + o, l, etag,
                            (char *)buf + o);
      ptrs[i] = &reqs[i];
    }
  if (s3_perform (c, ptrs, (size_t)n) == 0)
    ret = 0;
  else
    for (uint64_t i = 0; i < n; i++)
      if (reqs[i].rc)
        {
          if (err)
            *err = reqs[i].err;
          break;
        }

out:
  free (reqs);
  free (ptrs);
  return ret;
}

int
s3_read_object (struct s3_client *c, const char *uri, char **buf, size_t *len,
                struct s3bd_error *err)
{
  char *bucket = NULL, *key = NULL, *b = NULL;
  struct s3_object_info info;
  int ret = -1;

  *buf = NULL;
  *len = 0;
  if (s3_parse_uri (uri, &bucket, &key, err) == -1
      || s3_head (c, bucket, key, &info, err) == -1)
    goto out;
  if (info.size >= SIZE_MAX || (b = malloc ((size_t)info.size + 1)) == NULL)
    {
      s3bd_fail (err, S3BD_ENOMEM, "%s: cannot hold %" PRIu64 " bytes", uri,
                 info.size);
      goto out;
    }
  if (s3_get (c, bucket, key, 0, info.size, info.etag, b, 0, err) == -1)
    goto out;
  b[info.size] = '\0';
  *buf = b;
  *len = (size_t)info.size;
  b = NULL;
  ret = 0;

out:
  free (b);
  free (bucket);
  free (key);
  return ret;
}

int
s3_put (struct s3_client *c, const char *bucket, const char *key,
        const void *body, size_t len, char etag_out[80], struct s3bd_error *err)
{
  struct s3_request r = { .method = S3_PUT,
                          .bucket = bucket,
                          .key = key,
                          .put_body = body,
                          .put_len = len };

  if (perform_one (c, &r, err) == -1)
    return -1;
  if (etag_out)
    memcpy (etag_out, r.etag, 80);
  s3_request_release (&r);
  return 0;
}

int
s3_create_bucket (struct s3_client *c, const char *bucket,
                  struct s3bd_error *err)
{
  struct s3_request r = {
    .method = S3_PUT, .bucket = bucket, .key = "", .put_body = "", .put_len = 0
  };

  if (perform_one (c, &r, err) == -1)
    return -1;
  s3_request_release (&r);
  return 0;
}

char *
s3_presign_get (struct s3_client *c, const char *bucket, const char *key,
                unsigned expires, struct s3bd_error *err)
{
  struct s3_request r = { .method = S3_GET, .bucket = bucket, .key = key };
  struct s3_creds cr;
  struct sigv4_pair hdr[1];
  struct sigv4_request sr;
  struct sigv4_result res;
  char *url = NULL, *host = NULL, *path = NULL, *query = NULL;
  char amz_date[17];
  struct strbuf b = STRBUF_INIT;

  if (creds_get (c->creds, &cr, err) == -1)
    return NULL;
  if (s3_request_target (c, &r, &url, &host, &path) == -1)
    {
      s3bd_fail (err, S3BD_ENOMEM, "out of memory");
      goto out;
    }
  if (cr.anonymous)
    {
      strbuf_adds (&b, url);
      goto out;
    }
  sigv4_amz_date ((long long)time (NULL), amz_date);
  hdr[0] = (struct sigv4_pair){ "host", host };
  sr = (struct sigv4_request){
    .method = "GET",
    .path = path,
    .headers = hdr,
    .nheaders = 1,
    .payload_sha256 = SIGV4_UNSIGNED_PAYLOAD,
    .amz_date = amz_date,
    .region = c->region,
    .service = "s3",
    .access_key = cr.access_key,
    .secret_key = cr.secret_key,
  };
  if (sigv4_presign (&sr, expires, cr.session_token, &res, &query) == -1)
    {
      s3bd_fail (err, S3BD_EINVAL, "cannot presign s3://%s/%s", bucket, key);
      goto out;
    }
  sigv4_result_free (&res);
  strbuf_addf (&b, "%s?%s", url, query);

out:
  memset (&cr, 0, sizeof cr);
  free (url);
  free (host);
  free (path);
  free (query);
  if (!strbuf_ok (&b))
    s3bd_fail (err, S3BD_ENOMEM, "out of memory");
  return b.len ? strbuf_detach (&b) : (strbuf_free (&b), NULL);
}

int
s3_parse_uri (const char *uri, char **bucket, char **prefix,
              struct s3bd_error *err)
{
  const char *b, *slash;

  *bucket = *prefix = NULL;
  if (strncmp (uri, "s3://", 5) != 0)
    return s3bd_fail (err, S3BD_EINVAL,
                      "%s: not an S3 URI (expected s3://bucket/prefix)", uri);
  b = uri + 5;
  slash = strchr (b, '/');
  if (slash == b || *b == '\0')
    return s3bd_fail (err, S3BD_EINVAL, "%s: no bucket name", uri);
  *bucket = slash ? strndup (b, (size_t)(slash - b)) : strdup (b);
  *prefix = strdup (slash ? slash + 1 : "");
  if (*bucket == NULL || *prefix == NULL)
    {
      free (*bucket);
      free (*prefix);
      *bucket = *prefix = NULL;
      return s3bd_fail (err, S3BD_ENOMEM, "out of memory");
    }
  return 0;
}
