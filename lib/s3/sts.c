/* s3bd: AWS STS AssumeRoleWithWebIdentity and AssumeRole for the
 * credential chain (creds.c).  A form POST with libcurl, the XML answer
 * parsed with expat.
 *
 * AssumeRoleWithWebIdentity is unsigned: the web identity token is the
 * proof; AssumeRole is signed with the source profile's credentials.  The token
 * is read from its file on every call (Kubernetes rotates it), and it and
 * the credentials are wiped before their memory is freed; none of them
 * ever reaches an error message.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <expat.h>

#include "s3bd/creds.h"
#include "s3bd/error.h"
#include "s3bd/sigv4.h"

#include "credsint.h"

#define STS_MAX_BODY 65536
#define STS_MAX_TOKEN 65536

enum sts_field
{
  F_NONE = -1,
  F_ACCESS_KEY,
  F_SECRET_KEY,
  F_SESSION_TOKEN,
  F_EXPIRATION,
  F_CODE,
  F_MESSAGE,
  F_COUNT
};

static const char *const field_names[F_COUNT] = {
  "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration",
  "Code",        "Message",
};

struct sts_parse
{
  int depth;
  bool in_credentials;
  enum sts_field cur;
  bool too_long;
  char val[F_COUNT][4096];
  size_t len[F_COUNT];
};

static const char *
local (const XML_Char *name)
{
  const char *s = strrchr (name, '\x01');

  return s ? s + 1 : name;
}

static void XMLCALL
on_start (void *arg, const XML_Char *name, const XML_Char **attrs)
{
  struct sts_parse *st = arg;
  const char *n = local (name);
  int i;

  (void)attrs;
  st->depth++;
  st->cur = F_NONE;
  if (strcmp (n, "Credentials") == 0)
    st->in_credentials = true;
  for (i = 0; i < F_COUNT; i++)
    if (strcmp (n, field_names[i]) == 0 && (i >= F_CODE || st->in_credentials))
      {
        st->cur = (enum sts_field)i;
        st->len[i] = 0;
      }
}

static void XMLCALL
on_end (void *arg, const XML_Char *name)
{
  struct sts_parse *st = arg;

  st->depth--;
  if (strcmp (local (name), "Credentials") == 0)
    st->in_credentials = false;
  st->cur = F_NONE;
}

static void XMLCALL
on_text (void *arg, const XML_Char *s, int len)
{
  struct sts_parse *st = arg;
  size_t *l;

  if (st->cur == F_NONE || len <= 0)
    return;
  l = &st->len[st->cur];
  if (*l + (size_t)len >= sizeof st->val[0])
    {
      st->too_long = true;
      return;
    }
  memcpy (st->val[st->cur] + *l, s, (size_t)len);
  *l += (size_t)len;
  st->val[st->cur][*l] = '\0';
}

static void XMLCALL
on_doctype (void *arg, const XML_Char *name, const XML_Char *sysid,
            const XML_Char *pubid, int internal)
{
  (void)arg, (void)name, (void)sysid, (void)pubid, (void)internal;
}

int
sts_parse_response (const char *body, size_t len, long status, const char *what,
                    struct s3_creds *c, struct s3bd_error *err)
{
  struct sts_parse *st = calloc (1, sizeof *st);
  XML_Parser xp;
  int64_t expiration;
  int r = -1;
  int i;

  if (st == NULL)
    return s3bd_fail (err, S3BD_ENOMEM, "%s: out of memory", what);
  st->cur = F_NONE;
  xp = XML_ParserCreateNS (NULL, '\x01');
  if (xp == NULL)
    {
      free (st);
      return s3bd_fail (err, S3BD_ENOMEM, "%s: out of memory", what);
    }
  XML_SetUserData (xp, st);
  XML_SetElementHandler (xp, on_start, on_end);
  XML_SetCharacterDataHandler (xp, on_text);
  XML_SetStartDoctypeDeclHandler (xp, on_doctype);
  XML_SetParamEntityParsing (xp, XML_PARAM_ENTITY_PARSING_NEVER);
  if (len > STS_MAX_BODY || XML_Parse (xp, body, (int)len, 1) != XML_STATUS_OK)
    {
      if (status != 200)
        s3bd_fail (err, S3BD_ECREDS, "%s: HTTP %ld", what, status);
      else
        s3bd_fail (err, S3BD_EPROTO, "%s: malformed XML answer", what);
      goto out;
    }
  for (i = 0; i < F_COUNT; i++)
    for (size_t j = 0; j < st->len[i]; j++)
      if ((unsigned char)st->val[i][j] < ' ')
        st->val[i][j] = ' ';
  if (status != 200 || st->len[F_CODE])
    {
      s3bd_fail (err, S3BD_ECREDS, "%s: HTTP %ld: %.64s%s%.200s", what, status,
                 st->len[F_CODE] ? st->val[F_CODE] : "no error code",
                 st->len[F_MESSAGE] ? ": " : "",
                 st->len[F_MESSAGE] ? st->val[F_MESSAGE] : "");
      goto out;
    }
  if (st->too_long)
    {
      s3bd_fail (err, S3BD_EPROTO, "%s: a credential field is too long", what);
      goto out;
    }
  for (i = F_ACCESS_KEY; i <= F_EXPIRATION; i++)
    if (st->len[i] == 0)
      {
        s3bd_fail (err, S3BD_EPROTO, "%s: answer without Credentials/%s", what,
                   field_names[i]);
        goto out;
      }
  if (parse_iso8601 (trim (st->val[F_EXPIRATION]), &expiration, NULL) < 0)
    {
      s3bd_fail (err, S3BD_EPROTO, "%s: malformed Expiration", what);
      goto out;
    }
  if (set_creds (c, trim (st->val[F_ACCESS_KEY]), trim (st->val[F_SECRET_KEY]),
                 trim (st->val[F_SESSION_TOKEN]), what, err)
      < 0)
    goto out;
  c->expiration = expiration;
  r = 0;

out:
  XML_ParserFree (xp);
  explicit_bzero (st, sizeof *st);
  free (st);
  return r;
}

/* ---- HTTP ---- */

struct body
{
  char *buf;
  size_t len;
  bool too_big;
};

static size_t
write_cb (char *data, size_t size, size_t nmemb, void *arg)
{
  struct body *b = arg;
  size_t n = size * nmemb;

  if (n > STS_MAX_BODY - b->len)
    {
      b->too_big = true;
      return 0;
    }
  memcpy (b->buf + b->len, data, n);
  b->len += n;
  return n;
}

int
creds_http (const char *url, const char *post, const char *const *extra,
            unsigned timeout_s, long *status, char **out, size_t *out_len,
            const char *what, struct s3bd_error *err)
{
  struct curl_slist *headers = NULL, *l;
  struct body b = { 0 };
  char curl_err[CURL_ERROR_SIZE] = "";
  CURL *curl;
  CURLcode rc;
  int r = -1;

  *out = NULL;
  b.buf = malloc (STS_MAX_BODY + 1);
  curl = curl_easy_init ();
  if (b.buf == NULL || curl == NULL)
    {
      s3bd_fail (err, S3BD_ENOMEM, "%s: out of memory", what);
      goto out;
    }
  curl_easy_setopt (curl, CURLOPT_URL, url);
  curl_easy_setopt (curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt (curl, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_s * 1000);
  curl_easy_setopt (curl, CURLOPT_TIMEOUT_MS, (long)timeout_s * 1000);
  curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt (curl, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt (curl, CURLOPT_ERRORBUFFER, curl_err);
#if LIBCURL_VERSION_NUM >= 0x075500
  curl_easy_setopt (curl, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
  if (post)
    {
      curl_easy_setopt (curl, CURLOPT_POSTFIELDS, post);
      l = curl_slist_append (headers,
                             "Content-Type: application/x-www-form-urlencoded");
      if (l)
        headers = l;
    }
  for (size_t i = 0; extra && extra[i]; i++)
    {
      l = curl_slist_append (headers, extra[i]);
      if (l == NULL)
        {
          s3bd_fail (err, S3BD_ENOMEM, "%s: out of memory", what);
          goto out;
        }
      headers = l;
    }
  l = curl_slist_append (headers, "Accept: application/json, text/xml");
  if (l)
    headers = l;
  curl_easy_setopt (curl, CURLOPT_HTTPHEADER, headers);
  rc = curl_easy_perform (curl);
  if (b.too_big)
    {
      s3bd_fail (err, S3BD_EPROTO, "%s: answer larger than %d bytes", what,
                 STS_MAX_BODY);
      goto out;
    }
  if (rc != CURLE_OK)
    {
      s3bd_fail (err, S3BD_ENET, "%s: %s", what,
                 curl_err[0] ? curl_err : curl_easy_strerror (rc));
      goto out;
    }
  curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, status);
  b.buf[b.len] = '\0';
  *out = b.buf;
  *out_len = b.len;
  b.buf = NULL;
  r = 0;

out:
  if (curl)
    curl_easy_cleanup (curl);
  if (headers)
    {
      for (l = headers; l; l = l->next)
        explicit_bzero (l->data, strlen (l->data));
      curl_slist_free_all (headers);
    }
  if (b.buf)
    {
      explicit_bzero (b.buf, b.len);
      free (b.buf);
    }
  return r;
}

char *
creds_read_token_file (const char *path, const char *what,
                       struct s3bd_error *err)
{
  FILE *f = fopen (path, "re");
  char *buf;
  size_t n;

  if (f == NULL)
    {
      s3bd_fail (err, S3BD_ECREDS, "%s: cannot read token file %s: %s", what,
                 path, strerror (errno));
      return NULL;
    }
  buf = malloc (STS_MAX_TOKEN + 1);
  if (buf == NULL)
    {
      fclose (f);
      s3bd_fail (err, S3BD_ENOMEM, "%s: out of memory", what);
      return NULL;
    }
  n = fread (buf, 1, STS_MAX_TOKEN + 1, f);
  fclose (f);
  buf[n > STS_MAX_TOKEN ? STS_MAX_TOKEN : n] = '\0';
  if (n > STS_MAX_TOKEN)
    {
      explicit_bzero (buf, STS_MAX_TOKEN);
      free (buf);
      s3bd_fail (err, S3BD_ECREDS, "%s: token file %s is larger than %d bytes",
                 what, path, STS_MAX_TOKEN);
      return NULL;
    }
  if (*trim (buf) == '\0')
    {
      free (buf);
      s3bd_fail (err, S3BD_ECREDS, "%s: token file %s is empty", what, path);
      return NULL;
    }
  return buf;
}

int
sts_assume_role_with_web_identity (const char *endpoint, const char *role_arn,
                                   const char *session_name,
                                   const char *token_file, unsigned timeout_s,
                                   struct s3_creds *c, struct s3bd_error *err)
{
  char what[IMDS_ENDPOINT_SIZE + 128];
  char *token = NULL, *post = NULL, *body = NULL;
  char *e_arn = NULL, *e_name = NULL, *e_tok = NULL;
  size_t len = 0, n;
  long status = 0;
  CURL *curl = NULL;
  int r = -1;

  snprintf (what, sizeof what, "web identity: STS %s", endpoint);
  token = creds_read_token_file (token_file, "web identity", err);
  if (token == NULL)
    return -1;
  curl = curl_easy_init ();
  if (curl == NULL)
    goto nomem;
  e_arn = curl_easy_escape (curl, role_arn, 0);
  e_name = curl_easy_escape (curl, session_name, 0);
  e_tok = curl_easy_escape (curl, trim (token), 0);
  if (!e_arn || !e_name || !e_tok)
    goto nomem;
  n = strlen (e_arn) + strlen (e_name) + strlen (e_tok) + 256;
  post = malloc (n);
  if (post == NULL)
    goto nomem;
  snprintf (post, n,
            "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=%s&"
            "RoleSessionName=%s&WebIdentityToken=%s",
            e_arn, e_name, e_tok);
  if (creds_http (endpoint, post, NULL, timeout_s, &status, &body, &len, what,
                  err)
      < 0)
    goto out;
  r = sts_parse_response (body, len, status, what, c, err);
  goto out;

nomem:
  s3bd_fail (err, S3BD_ENOMEM, "web identity: out of memory");
out:
  if (e_tok)
    {
      explicit_bzero (e_tok, strlen (e_tok));
      curl_free (e_tok);
    }
  curl_free (e_arn);
  curl_free (e_name);
  if (curl)
    curl_easy_cleanup (curl);
  if (post)
    {
      explicit_bzero (post, strlen (post));
      free (post);
    }
  if (body)
    {
      explicit_bzero (body, len);
      free (body);
    }
  explicit_bzero (token, strlen (token));
  free (token);
  return r;
}

/* "host[:port]" and the path of an http(s) URL, for signing. */
static int
split_url (const char *url, char *host, size_t hsize, const char **path)
{
  const char *h = strstr (url, "://"), *slash;
  size_t n;

  if (h == NULL)
    return -1;
  h += 3;
  slash = strchr (h, '/');
  n = slash ? (size_t)(slash - h) : strlen (h);
  if (n == 0 || n >= hsize || memchr (h, '@', n) != NULL)
    return -1;
  memcpy (host, h, n);
  host[n] = '\0';
  *path = slash ? slash : "/";
  return 0;
}

int
sts_assume_role (const char *endpoint, const char *region, const char *role_arn,
                 const char *session_name, const struct s3_creds *base,
                 unsigned timeout_s, struct s3_creds *c, struct s3bd_error *err)
{
  char what[IMDS_ENDPOINT_SIZE + 128], host[256], date[17], sha[65];
  char h_host[300], h_date[64], h_auth[2200], *h_token = NULL;
  const char *path, *headers[5];
  char *post = NULL, *body = NULL, *e_arn = NULL, *e_name = NULL;
  struct sigv4_pair signed_h[4];
  struct sigv4_request req = { 0 };
  struct sigv4_result sig = { 0 };
  size_t len = 0, n, nh = 0, k = 0;
  long status = 0;
  CURL *curl = NULL;
  int r = -1;

  snprintf (what, sizeof what, "assume role: STS %s", endpoint);
  if (split_url (endpoint, host, sizeof host, &path) < 0)
    return s3bd_fail (err, S3BD_EINVAL, "%s: not an http(s)://host/ URL", what);
  curl = curl_easy_init ();
  if (curl == NULL)
    goto nomem;
  e_arn = curl_easy_escape (curl, role_arn, 0);
  e_name = curl_easy_escape (curl, session_name, 0);
  if (!e_arn || !e_name)
    goto nomem;
  n = strlen (e_arn) + strlen (e_name) + 128;
  post = malloc (n);
  if (post == NULL)
    goto nomem;
  snprintf (post, n,
            "Action=AssumeRole&Version=2011-06-15&RoleArn=%s&"
            "RoleSessionName=%s",
            e_arn, e_name);

  /* Signed: content-type, host, x-amz-date and the base's session token
   * (in the canonical order: sorted by name).
   */
  sigv4_amz_date ((long long)time (NULL), date);
  sigv4_sha256_hex (post, strlen (post), sha);
  signed_h[nh++] = (struct sigv4_pair){ "content-type",
                                        "application/x-www-form-urlencoded" };
  signed_h[nh++] = (struct sigv4_pair){ "host", host };
  signed_h[nh++] = (struct sigv4_pair){ "x-amz-date", date };
  if (base->session_token[0])
    signed_h[nh++]
        = (struct sigv4_pair){ "x-amz-security-token", base->session_token };
  req.method = "POST";
  req.path = path;
  req.headers = signed_h;
  req.nheaders = nh;
  req.payload_sha256 = sha;
  req.amz_date = date;
  req.region = region;
  req.service = "sts";
  req.access_key = base->access_key;
  req.secret_key = base->secret_key;
  if (sigv4_sign (&req, &sig) < 0)
    goto nomem;
  snprintf (h_host, sizeof h_host, "Host: %s", host);
  snprintf (h_date, sizeof h_date, "X-Amz-Date: %s", date);
  snprintf (h_auth, sizeof h_auth, "Authorization: %s", sig.authorization);
  headers[k++] = h_host;
  headers[k++] = h_date;
  headers[k++] = h_auth;
  if (base->session_token[0])
    {
      n = strlen (base->session_token) + 32;
      h_token = malloc (n);
      if (h_token == NULL)
        goto nomem;
      snprintf (h_token, n, "X-Amz-Security-Token: %s", base->session_token);
      headers[k++] = h_token;
    }
  headers[k] = NULL;
  if (creds_http (endpoint, post, headers, timeout_s, &status, &body, &len,
                  what, err)
      < 0)
    goto out;
  r = sts_parse_response (body, len, status, what, c, err);
  goto out;

nomem:
  s3bd_fail (err, S3BD_ENOMEM, "assume role: out of memory");
out:
  sigv4_result_free (&sig);
  explicit_bzero (h_auth, sizeof h_auth);
  if (h_token)
    {
      explicit_bzero (h_token, strlen (h_token));
      free (h_token);
    }
  curl_free (e_arn);
  curl_free (e_name);
  if (curl)
    curl_easy_cleanup (curl);
  free (post);
  if (body)
    {
      explicit_bzero (body, len);
      free (body);
    }
  return r;
}
