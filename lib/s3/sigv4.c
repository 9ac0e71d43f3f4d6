/* s3bd: AWS Signature Version 4.  See include/s3bd/sigv4.h.
 *
 * Written over OpenSSL's HMAC and SHA-256 rather than taken from libcurl's
 * CURLOPT_AWS_SIGV4: curl's signer sends no x-amz-content-sha256 (S3
 * servers answer 400), signs the query string unsorted and mis-encodes '+'
 * in keys.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "s3bd/sigv4.h"
#include "common/strbuf.h"

static const char hexdigits_lower[] = "0123456789abcdef";
static const char hexdigits_upper[] = "0123456789ABCDEF";

static void
hex_encode (const unsigned char *in, size_t len, char *out)
{
  for (size_t i = 0; i < len; i++)
    {
      out[2 * i] = hexdigits_lower[in[i] >> 4];
      out[2 * i + 1] = hexdigits_lower[in[i] & 15];
    }
  out[2 * len] = '\0';
}

void
sigv4_sha256_hex (const void *data, size_t len, char out[65])
{
  unsigned char md[SHA256_DIGEST_LENGTH];

  SHA256 (data, len, md);
  hex_encode (md, sizeof md, out);
}

static void
hmac_sha256 (const void *key, size_t keylen, const char *msg,
             unsigned char out[32])
{
  unsigned int outlen = 32;

  HMAC (EVP_sha256 (), key, (int)keylen, (const unsigned char *)msg,
        strlen (msg), out, &outlen);
}

void
sigv4_amz_date (long long t, char out[17])
{
  time_t tt = (time_t)t;
  struct tm tm;

  gmtime_r (&tt, &tm);
  strftime (out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

static bool
unreserved (unsigned char c)
{
  return isalnum (c) || c == '-' || c == '_' || c == '.' || c == '~';
}

static void
uri_encode_into (struct strbuf *b, const char *s, size_t len, bool keep_slash)
{
  for (size_t i = 0; i < len; i++)
    {
      unsigned char c = (unsigned char)s[i];

      if ((c < 0x80 && unreserved (c)) || (keep_slash && c == '/'))
        strbuf_addc (b, (char)c);
      else
        {
          char esc[3]
              = { '%', hexdigits_upper[c >> 4], hexdigits_upper[c & 15] };
          strbuf_add (b, esc, 3);
        }
    }
}

char *
sigv4_uri_encode (const char *s, size_t len, bool keep_slash)
{
  struct strbuf b = STRBUF_INIT;

  uri_encode_into (&b, s, len, keep_slash);
  return strbuf_detach (&b);
}

/* One query parameter or header, encoded or lower-cased, ready to sort. */
struct item
{
  char *name;
  char *value;
  size_t order; /* input position: keeps duplicate headers in order */
};

static int
item_cmp (const void *a, const void *b)
{
  const struct item *x = a, *y = b;
  int r = strcmp (x->name, y->name);

  if (r)
    return r;
  /* Query parameters with the same name sort by value; headers with the
   * same name keep their input order (values are joined in that order).
   * Headers have value == NULL at this point.
   */
  if (x->value && y->value)
    {
      r = strcmp (x->value, y->value);
      if (r)
        return r;
    }
  return x->order < y->order ? -1 : x->order > y->order;
}

static void
items_free (struct item *v, size_t n)
{
  if (v == NULL)
    return;
  for (size_t i = 0; i < n; i++)
    {
      free (v[i].name);
      free (v[i].value);
    }
  free (v);
}

/* Canonical query string: names and values encoded, sorted. */
static int
canonical_query (const struct sigv4_pair *q, size_t n, struct strbuf *out)
{
  struct item *v = calloc (n ? n : 1, sizeof *v);

  if (v == NULL)
    return -1;
  for (size_t i = 0; i < n; i++)
    {
      const char *val = q[i].value ? q[i].value : "";

      v[i].name = sigv4_uri_encode (q[i].name, strlen (q[i].name), false);
      v[i].value = sigv4_uri_encode (val, strlen (val), false);
      v[i].order = i;
      if (v[i].name == NULL || v[i].value == NULL)
        {
          items_free (v, n);
          return -1;
        }
    }
  qsort (v, n, sizeof *v, item_cmp);
  for (size_t i = 0; i < n; i++)
    {
      if (i)
        strbuf_addc (out, '&');
      strbuf_addf (out, "%s=%s", v[i].name, v[i].value);
    }
  items_free (v, n);
  return strbuf_ok (out) ? 0 : -1;
}

/* Appends a header value trimmed, with runs of white space (including
 * the line breaks of folded values) turned into one space.
 */
static void
add_trimmed (struct strbuf *b, const char *v)
{
  bool space = false, any = false;

  for (; *v; v++)
    {
      if (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n')
        {
          space = true;
          continue;
        }
      if (space && any)
        strbuf_addc (b, ' ');
      space = false;
      any = true;
      strbuf_addc (b, *v);
    }
}

/* Canonical headers ("name:value\n" each) and the signed headers list. */
static int
canonical_headers (const struct sigv4_pair *h, size_t n, struct strbuf *canon,
                   struct strbuf *signed_list)
{
  struct item *v = calloc (n ? n : 1, sizeof *v);

  if (v == NULL)
    return -1;
  for (size_t i = 0; i < n; i++)
    {
      v[i].name = strdup (h[i].name);
      v[i].order = i;
      if (v[i].name == NULL)
        {
          items_free (v, n);
          return -1;
        }
      for (char *p = v[i].name; *p; p++)
        *p = (char)tolower ((unsigned char)*p);
    }
  qsort (v, n, sizeof *v, item_cmp);
  for (size_t i = 0; i < n; i++)
    {
      bool same = i > 0 && strcmp (v[i].name, v[i - 1].name) == 0;

      if (same)
        strbuf_addc (canon, ',');
      else
        {
          if (i > 0)
            {
              strbuf_addc (canon, '\n');
              strbuf_addc (signed_list, ';');
            }
          strbuf_adds (canon, v[i].name);
          strbuf_addc (canon, ':');
          strbuf_adds (signed_list, v[i].name);
        }
      add_trimmed (canon, h[v[i].order].value ? h[v[i].order].value : "");
    }
  if (n)
    strbuf_addc (canon, '\n');
  items_free (v, n);
  return strbuf_ok (canon) && strbuf_ok (signed_list) ? 0 : -1;
}

static void
signing_key (const struct sigv4_request *r, unsigned char key[32])
{
  struct strbuf k = STRBUF_INIT;
  char date[9];

  memcpy (date, r->amz_date, 8);
  date[8] = '\0';
  strbuf_addf (&k, "AWS4%s", r->secret_key);
  if (!strbuf_ok (&k))
    {
      memset (key, 0, 32);
      return;
    }
  hmac_sha256 (k.s, k.len, date, key);
  OPENSSL_cleanse (k.s, k.len);
  strbuf_free (&k);
  hmac_sha256 (key, 32, r->region, key);
  hmac_sha256 (key, 32, r->service, key);
  hmac_sha256 (key, 32, "aws4_request", key);
}

static bool
valid_request (const struct sigv4_request *r)
{
  return r->method && r->path && r->payload_sha256 && r->amz_date
         && strlen (r->amz_date) == 16 && r->region && r->service
         && r->access_key && r->secret_key && (r->nquery == 0 || r->query)
         && (r->nheaders == 0 || r->headers);
}

/* Builds the canonical request and string to sign, and the signature. */
static int
sign_common (const struct sigv4_request *r, const struct sigv4_pair *query,
             size_t nquery, struct sigv4_result *out)
{
  struct strbuf creq = STRBUF_INIT, sts = STRBUF_INIT;
  struct strbuf hdrs = STRBUF_INIT, signed_list = STRBUF_INIT;
  char hash[65], date[9];
  unsigned char key[32], sig[32];
  int ret = -1;

  memcpy (date, r->amz_date, 8);
  date[8] = '\0';

  strbuf_adds (&creq, r->method);
  strbuf_addc (&creq, '\n');
  uri_encode_into (&creq, r->path, strlen (r->path), true);
  strbuf_addc (&creq, '\n');
  if (canonical_query (query, nquery, &creq) == -1)
    goto out;
  strbuf_addc (&creq, '\n');
  if (canonical_headers (r->headers, r->nheaders, &hdrs, &signed_list) == -1)
    goto out;
  strbuf_add (&creq, hdrs.s ? hdrs.s : "", hdrs.len);
  strbuf_addc (&creq, '\n');
  strbuf_add (&creq, signed_list.s ? signed_list.s : "", signed_list.len);
  strbuf_addc (&creq, '\n');
  strbuf_adds (&creq, r->payload_sha256);
  if (!strbuf_ok (&creq))
    goto out;

  sigv4_sha256_hex (creq.s, creq.len, hash);
  strbuf_addf (&sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s",
               r->amz_date, date, r->region, r->service, hash);
  if (!strbuf_ok (&sts) || signed_list.len >= sizeof out->signed_headers)
    goto out;

  signing_key (r, key);
  hmac_sha256 (key, sizeof key, sts.s, sig);
  OPENSSL_cleanse (key, sizeof key);
  hex_encode (sig, sizeof sig, out->signature);
  memcpy (out->signed_headers, signed_list.s ? signed_list.s : "",
          signed_list.len + 1);
  out->canonical_request = strbuf_detach (&creq);
  out->string_to_sign = strbuf_detach (&sts);
  ret = 0;

out:
  strbuf_free (&creq);
  strbuf_free (&sts);
  strbuf_free (&hdrs);
  strbuf_free (&signed_list);
  return ret;
}

int
sigv4_sign (const struct sigv4_request *r, struct sigv4_result *out)
{
  char date[9];
  int n;

  memset (out, 0, sizeof *out);
  if (!valid_request (r))
    return -1;
  if (sign_common (r, r->query, r->nquery, out) == -1)
    return -1;
  memcpy (date, r->amz_date, 8);
  date[8] = '\0';
  n = snprintf (out->authorization, sizeof out->authorization,
                "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, "
                "SignedHeaders=%s, Signature=%s",
                r->access_key, date, r->region, r->service, out->signed_headers,
                out->signature);
  if (n < 0 || (size_t)n >= sizeof out->authorization)
    {
      sigv4_result_free (out);
      return -1;
    }
  return 0;
}

int
sigv4_presign (const struct sigv4_request *r, unsigned expires,
               const char *session_token, struct sigv4_result *out,
               char **query_out)
{
  struct strbuf cred = STRBUF_INIT, signed_list = STRBUF_INIT;
  struct strbuf hdrs = STRBUF_INIT, q = STRBUF_INIT;
  struct sigv4_pair *all = NULL;
  char expires_s[16], date[9];
  size_t n = 0;
  int ret = -1;

  memset (out, 0, sizeof *out);
  *query_out = NULL;
  if (!valid_request (r))
    return -1;
  memcpy (date, r->amz_date, 8);
  date[8] = '\0';
  snprintf (expires_s, sizeof expires_s, "%u", expires);
  strbuf_addf (&cred, "%s/%s/%s/%s/aws4_request", r->access_key, date,
               r->region, r->service);
  /* The signed header list goes into the query, so compute it first. */
  if (canonical_headers (r->headers, r->nheaders, &hdrs, &signed_list) == -1
      || !strbuf_ok (&cred))
    goto out;

  all = calloc (r->nquery + 7, sizeof *all);
  if (all == NULL)
    goto out;
  for (size_t i = 0; i < r->nquery; i++)
    all[n++] = r->query[i];
  all[n++] = (struct sigv4_pair){ "X-Amz-Algorithm", "AWS4-HMAC-SHA256" };
  all[n++] = (struct sigv4_pair){ "X-Amz-Credential", cred.s };
  all[n++] = (struct sigv4_pair){ "X-Amz-Date", r->amz_date };
  all[n++] = (struct sigv4_pair){ "X-Amz-Expires", expires_s };
  if (session_token && *session_token)
    all[n++] = (struct sigv4_pair){ "X-Amz-Security-Token", session_token };
  all[n++] = (struct sigv4_pair){ "X-Amz-SignedHeaders",
                                  signed_list.s ? signed_list.s : "" };
  if (sign_common (r, all, n, out) == -1)
    goto out;
  if (canonical_query (all, n, &q) == -1)
    goto out;
  strbuf_addf (&q, "&X-Amz-Signature=%s", out->signature);
  *query_out = strbuf_detach (&q);
  if (*query_out == NULL)
    goto out;
  ret = 0;

out:
  if (ret == -1)
    sigv4_result_free (out);
  free (all);
  strbuf_free (&cred);
  strbuf_free (&signed_list);
  strbuf_free (&hdrs);
  strbuf_free (&q);
  return ret;
}

void
sigv4_result_free (struct sigv4_result *out)
{
  free (out->canonical_request);
  free (out->string_to_sign);
  out->canonical_request = out->string_to_sign = NULL;
}
