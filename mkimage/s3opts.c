/* s3bd commands: the S3 connection options.  See s3opts.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3bd/parse.h"
#include "s3opts.h"

enum
{
  OPT_ENDPOINT = S3OPTS_FIRST,
  OPT_REGION,
  OPT_PROFILE,
  OPT_PATH,
  OPT_VIRTUAL,
  OPT_CA,
  OPT_NOVERIFY,
  OPT_ANON,
  OPT_CONN,
  OPT_RETRIES,
  OPT_TIMEOUT,
  OPT_CONNECT_TIMEOUT,
  OPT_STALL_TIMEOUT,
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
  { "timeout", required_argument, NULL, OPT_TIMEOUT },
  { "connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT },
  { "stall-timeout", required_argument, NULL, OPT_STALL_TIMEOUT },
  { NULL, 0, NULL, 0 },
};

const char s3opts_help[]
    = "S3 options:\n"
      "  --endpoint URL      S3 endpoint (default: AWS_ENDPOINT_URL_S3,\n"
      "                      AWS_ENDPOINT_URL, the profile's endpoint_url, "
      "AWS)\n"
      "  --region R          region (default: AWS_REGION, profile, us-east-1)\n"
      "  --profile P         credentials/config profile\n"
      "  --path-style        path-style addressing (default: auto)\n"
      "  --virtual-hosted    virtual-hosted addressing\n"
      "  --ca-file F         CA bundle for TLS\n"
      "  --no-verify-tls     do not verify certificates (testing only)\n"
      "  --anonymous         unsigned requests (public buckets)\n"
      "  --connections N     transfers in flight (default 64)\n"
      "  --retries N         attempts per request at most (default: until\n"
      "                      --timeout, within the retry quota)\n"
      "  --timeout S         seconds for a whole request, retries included\n"
      "                      (default 60)\n"
      "  --connect-timeout S seconds to connect (default 5)\n"
      "  --stall-timeout S   retry an attempt stalled this long (default 5)\n";

unsigned
opt_count (const char *prog, const char *opt, const char *s, unsigned min,
           unsigned max)
{
  struct s3bd_error err = { 0 };
  uint64_t v;

  if (parse_count (s, min, max, &v, &err) == -1)
    {
      fprintf (stderr, "%s: %s: %s\n", prog, opt, err.msg);
      exit (2);
    }
  return (unsigned)v;
}

/* The command's spelling of each option, as s3_config_set names it: a
 * flag stands for the value it sets.
 */
static const struct
{
  int opt;
  const char *name, *flag_value;
} names[] = {
  { OPT_ENDPOINT, "endpoint", NULL },
  { OPT_REGION, "region", NULL },
  { OPT_PROFILE, "profile", NULL },
  { OPT_PATH, "path-style", "true" },
  { OPT_VIRTUAL, "path-style", "false" },
  { OPT_CA, "ca-file", NULL },
  { OPT_NOVERIFY, "tls-verify", "false" },
  { OPT_ANON, "anonymous", "true" },
  { OPT_CONN, "connections", NULL },
  { OPT_RETRIES, "retries", NULL },
  { OPT_TIMEOUT, "timeout", NULL },
  { OPT_CONNECT_TIMEOUT, "connect-timeout", NULL },
  { OPT_STALL_TIMEOUT, "stall-timeout", NULL },
};

void
s3opts_apply (const char *prog, int opt, const char *arg, struct s3_config *cfg)
{
  struct s3bd_error err = { 0 };

  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    {
      const char *value = names[i].flag_value ? names[i].flag_value : arg;

      if (names[i].opt != opt)
        continue;
      if (s3_config_set (cfg, names[i].name, value, &err) != 0)
        {
          fprintf (stderr, "%s: --%s %s: %s\n", prog, names[i].name, value,
                   err.msg);
          exit (2);
        }
      return;
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
