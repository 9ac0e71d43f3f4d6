/* s3bd: credentials from EC2 instance metadata (IMDSv2): a session token,
 * the name of the instance's role, then the role's temporary credentials.
 * See include/s3bd/creds.h; creds.c decides when to come here (the last
 * step of the chain, and refreshes).
 *
 * Each fetch makes its own curl handle and keeps nothing between fetches,
 * which are rare: at creation, then near each expiry, one at a time per
 * provider (creds.c).  The token and the credentials are wiped before the
 * memory that held them is freed, and never reach an error message.  The
 * answers are parsed by functions that do no I/O (imds_parse_*), which
 * the fuzzer calls directly.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "s3bd/creds.h"
#include "s3bd/error.h"

#include "credsint.h"

#define IMDS_TOKEN_PATH "/latest/api/token"
#define IMDS_ROLE_PATH "/latest/meta-data/iam/security-credentials/"
#define IMDS_MAX_BODY 16384
#define IMDS_MAX_TIMEOUT_S 600

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
  char url[IMDS_ENDPOINT_SIZE + 256];
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

/* ---- What the service answers: parsed here, with no I/O ---- */

int
imds_parse_token (char *body, char *token, size_t size)
{
  char *tok = trim (body);
  size_t i;

  for (i = 0; tok[i]; i++)
    if ((unsigned char)tok[i] <= ' ' || (unsigned char)tok[i] >= 0x7f)
      break;
  if (i == 0 || tok[i] != '\0' || i >= size)
    return -1;
  memcpy (token, tok, i + 1);
  return 0;
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

int
imds_parse_role (char *body, const char *url, char *role, size_t size,
                 struct s3bd_error *err)
{
  char *nl = strchr (body, '\n'), *name;

  if (nl)
    *nl = '\0';
  name = trim (body);
  if (*name == '\0')
    return s3bd_fail (err, S3BD_ECREDS,
                      "%s: no IAM role attached to the instance", url);
  if (!valid_role (name) || strlen (name) >= size)
    return s3bd_fail (err, S3BD_EPROTO, "%s: malformed role name", url);
  memcpy (role, name, strlen (name) + 1);
  return 0;
}

const char *
json_string (json_object *obj, const char *name)
{
  json_object *v;

  if (!json_object_object_get_ex (obj, name, &v)
      || !json_object_is_type (v, json_type_string))
    return NULL;
  return json_object_get_string (v);
}

int
imds_parse_creds (const char *body, const char *url, struct s3_creds *c,
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

  obj = json_tokener_parse (body);
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
      /* An empty key would only be refused later, by S3, as a bad
       * signature.
       */
      if (v[i] == NULL || v[i][0] == '\0')
        {
          s3bd_fail (err, S3BD_EPROTO, "%s: credentials %s %s", url,
                     v[i] ? "with an empty" : "without", fields[i]);
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
  json_put_wiped (obj, fields, 3); /* the key id, the secret, the token */
  return r;
}

void
json_put_wiped (json_object *obj, const char *const *names, size_t n)
{
  if (obj == NULL)
    return;
  for (size_t i = 0; i < n; i++)
    {
      json_object *s;

      if (json_object_object_get_ex (obj, names[i], &s)
          && json_object_is_type (s, json_type_string))
        explicit_bzero ((char *)json_object_get_string (s),
                        (size_t)json_object_get_string_len (s));
    }
  json_object_put (obj);
}

/* IMDSv2: a session token for the requests that follow.  A 403, 404 or 405
 * means the service (or a proxy in front of it) does not do tokens: go on
 * without, like the AWS SDKs, and let the service answer 401 if it does
 * want one.
 */
static int
imds_get_token (struct imds *m, struct s3bd_error *err)
{
  int r;

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
  r = imds_parse_token (m->body, m->token, sizeof m->token);
  explicit_bzero (m->body, m->len);
  if (r < 0)
    return s3bd_fail (err, S3BD_EPROTO, "%s%s: malformed token", m->endpoint,
                      IMDS_TOKEN_PATH);
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

int
imds_fetch (const char *endpoint, unsigned timeout_s, struct s3_creds *c,
            char *role, size_t role_size, struct s3bd_error *err)
{
  char path[sizeof IMDS_ROLE_PATH + 64];
  char url[IMDS_ENDPOINT_SIZE + sizeof path];
  struct imds *m;
  char name[65];
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
  snprintf (url, sizeof url, "%s%s", endpoint, IMDS_ROLE_PATH);
  if (imds_parse_role (m->body, url, name, sizeof name, err) < 0)
    goto out;
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
  r = imds_parse_creds (m->body, url, c, err);

out:
  if (m->curl)
    curl_easy_cleanup (m->curl);
  explicit_bzero (m, sizeof *m);
  free (m);
  return r;
}
