/* s3bd commands: the S3 connection options.  See s3opts.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3opts.h"

enum {
  OPT_ENDPOINT = S3OPTS_FIRST, OPT_REGION, OPT_PROFILE, OPT_PATH,
  OPT_VIRTUAL, OPT_CA, OPT_NOVERIFY, OPT_ANON, OPT_CONN, OPT_RETRIES,
  OPT_TIMEOUT,
};

const struct option s3opts_long[] = {
  { "endpoint", required_argument, NULL, OPT_ENDPOINT },
  { "region", required_argument, NULL, OPT_REGION },
  { "profile", required_argument, NULL, OPT_PROFILE },
  { "path-style", no_argument, NULL, OPT_PATH },
  { "virtual-hosted", no_argument, NULL, OPT_VIRTUAL },
  { "ca-file", required_argument, NULL, OPT_CA },
  { "no-verify-tls", no_argument, NULL, OPT_NOVERIFY },
  { "anonymous", no_argument, NULL, OPT_ANON },
  { "connections", required_argument, NULL, OPT_CONN },
  { "retries", required_argument, NULL, OPT_RETRIES },
  { "timeout-ms", required_argument, NULL, OPT_TIMEOUT },
  { NULL, 0, NULL, 0 },
};

const char s3opts_help[] =
  "S3 options:\n"
  "  --endpoint URL      S3 endpoint (default: AWS_ENDPOINT_URL, profile, AWS)\n"
  "  --region R          region (default: AWS_REGION, profile, us-east-1)\n"
  "  --profile P         credentials/config profile\n"
  "  --path-style        path-style addressing (default: auto)\n"
  "  --virtual-hosted    virtual-hosted addressing\n"
  "  --ca-file F         CA bundle for TLS\n"
  "  --no-verify-tls     do not verify certificates (testing only)\n"
  "  --anonymous         unsigned requests (public buckets)\n"
  "  --connections N     transfers in flight (default 64)\n"
  "  --retries N         attempts per request (default 8)\n"
  "  --timeout-ms N      connect timeout (default 5000)\n";

int
parse_size (const char *s, uint64_t *out)
{
  char *end;
  unsigned long long v;
  unsigned shift = 0;

  errno = 0;
  v = strtoull (s, &end, 10);
  if (errno || end == s || *s == '-')
    return -1;
  switch (*end)
    {
    case '\0': break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: return -1;
    }
  if (*end != '\0' || (shift && v > (UINT64_MAX >> shift)))
    return -1;
  *out = (uint64_t) v << shift;
  return 0;
}

unsigned
parse_count (const char *prog, const char *opt, const char *s, unsigned min,
             unsigned max)
{
  uint64_t v;

  if (parse_size (s, &v) == -1 || v < min || v > max)
    {
      fprintf (stderr, "%s: %s: expected a number from %u to %u, got "
               "'%s'\n", prog, opt, min, max, s);
      exit (2);
    }
  return (unsigned) v;
}

void
s3opts_apply (const char *prog, int opt, const char *arg,
              struct s3_config *cfg)
{
  switch (opt)
    {
    case OPT_ENDPOINT: cfg->endpoint = arg; break;
    case OPT_REGION: cfg->region = arg; break;
    case OPT_PROFILE: cfg->creds.profile = arg; break;
    case OPT_PATH: cfg->addressing = S3_ADDR_PATH; break;
    case OPT_VIRTUAL: cfg->addressing = S3_ADDR_VIRTUAL; break;
    case OPT_CA: cfg->ca_file = arg; break;
    case OPT_NOVERIFY: cfg->no_verify_tls = true; break;
    case OPT_ANON: cfg->creds.anonymous = true; break;
    case OPT_CONN:
      cfg->max_connections = parse_count (prog, "--connections", arg, 1,
                                          1000000);
      break;
    case OPT_RETRIES:
      cfg->max_attempts = parse_count (prog, "--retries", arg, 1, 1000000);
      break;
    case OPT_TIMEOUT:
      cfg->connect_timeout_ms = parse_count (prog, "--timeout-ms", arg, 1,
                                             1000000);
      break;
    }
}

void
s3opts_merge (const struct option *own, struct option *all, size_t n)
{
  size_t a = 0, b = 0;

  while (own[a].name)
    a++;
  while (s3opts_long[b].name)
    b++;
  if (a + b + 1 > n)
    {
      fprintf (stderr, "internal error: option table too small\n");
      exit (1);
    }
  memcpy (all, own, a * sizeof *all);
  memcpy (all + a, s3opts_long, (b + 1) * sizeof *all);
}
