/* s3bd: container credentials (ECS task roles, EKS Pod Identity):
 * AWS_CONTAINER_CREDENTIALS_RELATIVE_URI at 169.254.170.2, or
 * AWS_CONTAINER_CREDENTIALS_FULL_URI with AWS_CONTAINER_AUTHORIZATION_TOKEN
 * or AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (re-read on every fetch).  The
 * answer is the JSON of instance metadata, parsed by imds_parse_creds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "s3bd/creds.h"
#include "s3bd/error.h"

#include "credsint.h"

/* The hosts the AWS SDKs allow over plain http. */
static bool
allowed_http_host (const char *host)
{
  static const char *const hosts[] = {
    "localhost",
    "169.254.170.2",
    "169.254.170.23",
    "[fd00:ec2::23]",
    "fd00:ec2::23",
    "[::1]",
    "::1",
  };
  size_t i;

  for (i = 0; i < sizeof hosts / sizeof *hosts; i++)
    if (strcasecmp (host, hosts[i]) == 0)
      return true;
  return strncmp (host, "127.", 4) == 0
         && strspn (host, "0123456789.") == strlen (host);
}

int
container_check_uri (const char *uri, struct s3bd_error *err)
{
  CURLU *u = curl_url ();
  char *scheme = NULL, *host = NULL;
  int r = 0;

  if (u == NULL)
    return s3bd_fail (err, S3BD_ENOMEM, "container credentials: out of memory");
  if (curl_url_set (u, CURLUPART_URL, uri, 0) != CURLUE_OK
      || curl_url_get (u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK
      || curl_url_get (u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
    r = s3bd_fail (err, S3BD_EINVAL,
                   "container credentials: AWS_CONTAINER_CREDENTIALS_FULL_URI "
                   "is not a URL");
  else if (strcasecmp (scheme, "https") == 0)
    r = 0;
  else if (strcasecmp (scheme, "http") != 0)
    r = s3bd_fail (err, S3BD_EINVAL,
                   "container credentials: AWS_CONTAINER_CREDENTIALS_FULL_URI "
                   "is not an http:// or https:// URL");
  else if (!allowed_http_host (host))
    r = s3bd_fail (err, S3BD_EINVAL,
                   "container credentials: AWS_CONTAINER_CREDENTIALS_FULL_URI "
                   "host %.256s is not allowed over plain http (only "
                   "loopback, 169.254.170.2, 169.254.170.23 and fd00:ec2::23)",
                   host);
  curl_free (scheme);
  curl_free (host);
  curl_url_cleanup (u);
  return r;
}

int
container_fetch (const char *url, const char *token, const char *token_file,
                 unsigned timeout_s, struct s3_creds *c, struct s3bd_error *err)
{
  char what[IMDS_ENDPOINT_SIZE + 64];
  char *file_token = NULL, *header = NULL, *body = NULL;
  size_t len = 0, n;
  long status = 0;
  int r = -1;

  snprintf (what, sizeof what, "container credentials: %.500s", url);
  if (token_file)
    {
      file_token = creds_read_token_file (
          token_file,
          "container credentials (AWS_CONTAINER_AUTHORIZATION_"
          "TOKEN_FILE)",
          err);
      if (file_token == NULL)
        return -1;
      token = file_token;
    }
  if (token)
    {
      if (strpbrk (token, "\r\n"))
        {
          s3bd_fail (err, S3BD_ECREDS,
                     "container credentials: the authorization token holds a "
                     "line break");
          goto out;
        }
      n = strlen (token) + 32;
      header = malloc (n);
      if (header == NULL)
        {
          s3bd_fail (err, S3BD_ENOMEM, "container credentials: out of memory");
          goto out;
        }
      snprintf (header, n, "Authorization: %s", token);
    }
  if (creds_http (url, NULL, (const char *const[]){ header, NULL }, timeout_s,
                  &status, &body, &len, what, err)
      < 0)
    goto out;
  if (status != 200)
    {
      s3bd_fail (err, S3BD_ECREDS, "%s: HTTP %ld", what, status);
      goto out;
    }
  r = imds_parse_creds (body, what, c, err);

out:
  if (header)
    {
      explicit_bzero (header, strlen (header));
      free (header);
    }
  if (file_token)
    {
      explicit_bzero (file_token, strlen (file_token));
      free (file_token);
    }
  if (body)
    {
      explicit_bzero (body, len);
      free (body);
    }
  return r;
}
