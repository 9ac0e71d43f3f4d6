/* Proves the SigV4 signer against (1) the AWS SigV4 test suite
 * (tests/data/aws-sigv4-suite: canonical request, string to sign and
 * signature, for header and query signing) and (2) S3 requests with odd
 * keys signed by botocore (tests/data/sigv4-botocore.json, made by
 * tests/gen-sigv4-botocore.py; tests/test-sigv4-botocore.sh checks that
 * the file still matches what botocore computes).
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "s3bd/creds.h"
#include "s3bd/s3xml.h"
#include "s3bd/sigv4.h"

#define SUITE S3BD_SOURCE_DIR "/tests/data/aws-sigv4-suite"
#define BOTO S3BD_SOURCE_DIR "/tests/data/sigv4-botocore.json"

static char *
slurp (const char *dir, const char *name)
{
  char path[1024];
  FILE *f;
  char *buf;
  long n;

  snprintf (path, sizeof path, "%s/%s", dir, name);
  f = fopen (path, "rb");
  if (f == NULL)
    return NULL;
  fseek (f, 0, SEEK_END);
  n = ftell (f);
  fseek (f, 0, SEEK_SET);
  buf = malloc ((size_t)n + 1);
  assert_non_null (buf);
  assert_int_equal (fread (buf, 1, (size_t)n, f), (size_t)n);
  buf[n] = '\0';
  fclose (f);
  return buf;
}

/* A request from request.txt, split into what the signer takes. */
struct parsed
{
  char method[16];
  char *path;
  struct sigv4_pair query[16];
  size_t nquery;
  struct sigv4_pair headers[16];
  size_t nheaders;
  char *body;
  char *storage[64];
  size_t nstorage;
};

static char *
keep (struct parsed *p, char *s)
{
  assert_true (p->nstorage < 64);
  p->storage[p->nstorage++] = s;
  return s;
}

static char *
decoded (struct parsed *p, const char *s, size_t len)
{
  char *d = keep (p, strndup (s, len));
  size_t n = len;

  assert_int_equal (s3xml_url_decode (d, &n, false), 0);
  d[n] = '\0';
  return d;
}

static void
parse_request (const char *text, struct parsed *p)
{
  const char *line_end = strstr (text, "\n");
  const char *sp = strchr (text, ' ');
  const char *http = strstr (text, " HTTP/1.1");
  const char *target, *q, *s;

  memset (p, 0, sizeof *p);
  assert_non_null (sp);
  assert_non_null (http);
  snprintf (p->method, sizeof p->method, "%.*s", (int)(sp - text), text);
  target = sp + 1;
  q = memchr (target, '?', (size_t)(http - target));
  p->path = keep (p, strndup (target, (size_t)((q ? q : http) - target)));
  if (q)
    for (s = q + 1; s < http;)
      {
        const char *amp = memchr (s, '&', (size_t)(http - s));
        const char *end = amp ? amp : http;
        const char *eq = memchr (s, '=', (size_t)(end - s));

        p->query[p->nquery].name
            = decoded (p, s, (size_t)((eq ? eq : end) - s));
        p->query[p->nquery].value
            = eq ? decoded (p, eq + 1, (size_t)(end - eq - 1)) : "";
        p->nquery++;
        s = end + 1;
      }
  /* Headers up to a blank line; a line that starts with white space
   * continues the previous value.
   */
  for (s = line_end ? line_end + 1 : text + strlen (text); *s;)
    {
      const char *e = strchr (s, '\n');
      size_t len = e ? (size_t)(e - s) : strlen (s);

      if (len == 0)
        {
          p->body = keep (p, strdup (e ? e + 1 : ""));
          break;
        }
      if (*s == ' ' || *s == '\t')
        {
          const char *prev = p->headers[p->nheaders - 1].value;
          size_t pl = strlen (prev);
          char *v = malloc (pl + len + 2);

          memcpy (v, prev, pl);
          v[pl] = '\n';
          memcpy (v + pl + 1, s, len);
          v[pl + 1 + len] = '\0';
          p->headers[p->nheaders - 1].value = keep (p, v);
        }
      else
        {
          const char *colon = memchr (s, ':', len);

          assert_non_null (colon);
          p->headers[p->nheaders].name
              = keep (p, strndup (s, (size_t)(colon - s)));
          p->headers[p->nheaders].value
              = keep (p, strndup (colon + 1, len - (size_t)(colon - s) - 1));
          p->nheaders++;
        }
      s = e ? e + 1 : s + len;
    }
}

static void
parsed_free (struct parsed *p)
{
  for (size_t i = 0; i < p->nstorage; i++)
    free (p->storage[i]);
}

static const char *
jstr (struct json_object *o, const char *k)
{
  struct json_object *v;

  return json_object_object_get_ex (o, k, &v) ? json_object_get_string (v)
                                              : NULL;
}

static int
jbool (struct json_object *o, const char *k)
{
  struct json_object *v;

  return json_object_object_get_ex (o, k, &v) && json_object_get_boolean (v);
}

/* The S3 signer never normalises paths; a generic-service vector that
 * asks for normalisation of a path with dot segments or "//" is not for
 * it.  Every other vector must match.
 */
static int
needs_normalization (const struct parsed *p, int normalize)
{
  return normalize
         && (strstr (p->path, "//") || strstr (p->path, "/./")
             || strstr (p->path, "/../")
             || (strlen (p->path) >= 2
                 && (strcmp (p->path + strlen (p->path) - 2, "/.") == 0
                     || strstr (p->path, "/..") != NULL)));
}

static void
strip_trailing_newline (char *s)
{
  size_t n = strlen (s);

  while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
    s[--n] = '\0';
}

static int vectors_checked;

static void
check_vector (void **state)
{
  const char *name = *state;
  char dir[1024], amz_date[17];
  char *ctx_text, *req_text, *exp;
  struct json_object *ctx, *creds;
  struct parsed p;
  struct sigv4_request r;
  struct sigv4_result res;
  struct sigv4_pair hdrs[20];
  char body_hash[65];
  const char *token;
  int64_t t;
  uint32_t ns;
  size_t nh;
  char *query;

  snprintf (dir, sizeof dir, "%s/%s", SUITE, name);
  ctx_text = slurp (dir, "context.json");
  req_text = slurp (dir, "request.txt");
  assert_non_null (ctx_text);
  assert_non_null (req_text);
  ctx = json_tokener_parse (ctx_text);
  assert_non_null (ctx);
  assert_true (json_object_object_get_ex (ctx, "credentials", &creds));
  parse_request (req_text, &p);
  if (needs_normalization (&p, jbool (ctx, "normalize")))
    {
      print_message ("skip %s: generic-service path normalisation, "
                     "which S3 does not do\n",
                     name);
      goto out;
    }
  assert_int_equal (parse_iso8601 (jstr (ctx, "timestamp"), &t, &ns), 0);
  sigv4_amz_date (t, amz_date);
  token = jstr (creds, "token");
  if (jbool (ctx, "omit_session_token"))
    token = NULL;

  if (jbool (ctx, "sign_body"))
    sigv4_sha256_hex (p.body, strlen (p.body), body_hash);
  else
    memcpy (body_hash, SIGV4_EMPTY_SHA256, 65);

  /* Header signing: the signer adds nothing itself; the caller lists
   * x-amz-date, the token and the payload hash as headers.
   */
  nh = 0;
  for (size_t i = 0; i < p.nheaders; i++)
    hdrs[nh++] = p.headers[i];
  hdrs[nh++] = (struct sigv4_pair){ "X-Amz-Date", amz_date };
  if (token)
    hdrs[nh++] = (struct sigv4_pair){ "X-Amz-Security-Token", token };
  if (jbool (ctx, "sign_body"))
    hdrs[nh++] = (struct sigv4_pair){ "X-Amz-Content-Sha256", body_hash };
  r = (struct sigv4_request){
    .method = p.method,
    .path = p.path,
    .query = p.query,
    .nquery = p.nquery,
    .headers = hdrs,
    .nheaders = nh,
    .payload_sha256 = body_hash,
    .amz_date = amz_date,
    .region = jstr (ctx, "region"),
    .service = jstr (ctx, "service"),
    .access_key = jstr (creds, "access_key_id"),
    .secret_key = jstr (creds, "secret_access_key"),
  };
  assert_int_equal (sigv4_sign (&r, &res), 0);
  exp = slurp (dir, "header-canonical-request.txt");
  assert_string_equal (res.canonical_request, exp);
  free (exp);
  exp = slurp (dir, "header-string-to-sign.txt");
  assert_string_equal (res.string_to_sign, exp);
  free (exp);
  exp = slurp (dir, "header-signature.txt");
  strip_trailing_newline (exp);
  assert_string_equal (res.signature, exp);
  free (exp);
  exp = slurp (dir, "header-signed-request.txt");
  assert_non_null (strstr (exp, res.authorization));
  free (exp);
  sigv4_result_free (&res);

  /* Query signing (presigned URL): only the request's own headers. */
  exp = slurp (dir, "query-canonical-request.txt");
  if (exp)
    {
      r.headers = p.headers;
      r.nheaders = p.nheaders;
      assert_int_equal (
          sigv4_presign (&r,
                         (unsigned)json_object_get_int (json_object_object_get (
                             ctx, "expiration_in_seconds")),
                         token, &res, &query),
          0);
      assert_string_equal (res.canonical_request, exp);
      free (exp);
      exp = slurp (dir, "query-signature.txt");
      strip_trailing_newline (exp);
      assert_string_equal (res.signature, exp);
      assert_non_null (strstr (query, exp));
      free (exp);
      free (query);
      sigv4_result_free (&res);
    }
  vectors_checked++;

out:
  json_object_put (ctx);
  free (ctx_text);
  free (req_text);
  parsed_free (&p);
}

static void
enough_vectors_checked (void **state)
{
  /* 40 vectors ship; only the normalising generic-service ones (about a
   * dozen) may be skipped.
   */
  assert_true (vectors_checked >= 25);
}

/* S3 requests signed by botocore: odd keys, ranges, If-Match, listings
 * with encoded query parameters, a session token.
 */
static void
botocore_vectors (void **state)
{
  struct json_object *all = json_object_from_file (BOTO);
  size_t n;

  assert_non_null (all);
  n = json_object_array_length (all);
  assert_true (n >= 10);
  for (size_t i = 0; i < n; i++)
    {
      struct json_object *v = json_object_array_get_idx (all, i);
      struct json_object *hs, *qs;
      struct sigv4_pair hdrs[16], q[16];
      struct sigv4_request r;
      struct sigv4_result res;
      size_t nh = 0, nq = 0;

      assert_true (json_object_object_get_ex (v, "headers", &hs));
      assert_true (json_object_object_get_ex (v, "query", &qs));
      json_object_object_foreach (hs, hk, hv)
      {
        assert_true (nh < 16);
        hdrs[nh++] = (struct sigv4_pair){ hk, json_object_get_string (hv) };
      }
      for (size_t j = 0; j < json_object_array_length (qs); j++)
        {
          struct json_object *pair = json_object_array_get_idx (qs, j);

          assert_true (nq < 16);
          q[nq++] = (struct sigv4_pair){
            json_object_get_string (json_object_array_get_idx (pair, 0)),
            json_object_get_string (json_object_array_get_idx (pair, 1))
          };
        }
      r = (struct sigv4_request){
        .method = jstr (v, "method"),
        .path = jstr (v, "path"),
        .query = q,
        .nquery = nq,
        .headers = hdrs,
        .nheaders = nh,
        .payload_sha256 = jstr (v, "payload_sha256"),
        .amz_date = jstr (v, "amz_date"),
        .region = jstr (v, "region"),
        .service = "s3",
        .access_key = jstr (v, "access_key"),
        .secret_key = jstr (v, "secret_key"),
      };
      assert_int_equal (sigv4_sign (&r, &res), 0);
      if (strcmp (res.canonical_request, jstr (v, "canonical_request")))
        print_error ("case %s:\nours:\n%s\nbotocore:\n%s\n", jstr (v, "name"),
                     res.canonical_request, jstr (v, "canonical_request"));
      assert_string_equal (res.canonical_request,
                           jstr (v, "canonical_request"));
      assert_string_equal (res.authorization, jstr (v, "authorization"));
      sigv4_result_free (&res);
    }
  json_object_put (all);
}

static void
uri_encoding (void **state)
{
  char *s;

  s = sigv4_uri_encode ("a b+c%d~e=f/g", 13, true);
  assert_string_equal (s, "a%20b%2Bc%25d~e%3Df/g");
  free (s);
  s = sigv4_uri_encode ("a/b", 3, false);
  assert_string_equal (s, "a%2Fb");
  free (s);
  s = sigv4_uri_encode ("\xc3\xa9", 2, true);
  assert_string_equal (s, "%C3%A9");
  free (s);
  /* S3 rule: no normalisation, "." and ".." and "//" kept as they are. */
  s = sigv4_uri_encode ("/b/./x/../y//z", 14, true);
  assert_string_equal (s, "/b/./x/../y//z");
  free (s);
}

static void
missing_inputs_rejected (void **state)
{
  struct sigv4_request r = { .method = "GET", .path = "/" };
  struct sigv4_result res;

  assert_int_equal (sigv4_sign (&r, &res), -1);
}

static int
by_name (const void *a, const void *b)
{
  return strcmp (((const struct CMUnitTest *)a)->name,
                 ((const struct CMUnitTest *)b)->name);
}

int
main (void)
{
  struct CMUnitTest tests[64];
  size_t n = 0;
  DIR *d = opendir (SUITE);
  struct dirent *de;
  char *names[64];
  size_t nn = 0;
  int ret;

  if (d == NULL)
    {
      fprintf (stderr, "cannot open %s\n", SUITE);
      return 1;
    }
  while ((de = readdir (d)) && n < 56)
    {
      if (de->d_type != DT_DIR || de->d_name[0] == '.')
        continue;
      names[nn] = strdup (de->d_name);
      tests[n++] = (struct CMUnitTest){ names[nn], check_vector, NULL, NULL,
                                        names[nn] };
      nn++;
    }
  closedir (d);
  qsort (tests, n, sizeof tests[0], by_name);
  tests[n++] = (struct CMUnitTest)cmocka_unit_test (enough_vectors_checked);
  tests[n++] = (struct CMUnitTest)cmocka_unit_test (botocore_vectors);
  tests[n++] = (struct CMUnitTest)cmocka_unit_test (uri_encoding);
  tests[n++] = (struct CMUnitTest)cmocka_unit_test (missing_inputs_rejected);
  ret = _cmocka_run_group_tests ("sigv4", tests, n, NULL, NULL);
  for (size_t i = 0; i < nn; i++)
    free (names[i]);
  return ret;
}
