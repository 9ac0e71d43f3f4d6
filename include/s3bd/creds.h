/* s3bd: AWS credentials and profile settings.
 *
 * The chain, in the order of the AWS SDKs (the first source that yields an
 * access key wins):
 *   1. explicit settings (creds_config.access_key / secret_key)
 *   2. environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 *      AWS_SESSION_TOKEN (unless a profile was named explicitly)
 *   3. the shared credentials file (AWS_SHARED_CREDENTIALS_FILE or
 *      ~/.aws/credentials), then the config file (AWS_CONFIG_FILE or
 *      ~/.aws/config), for the profile (explicit, AWS_PROFILE, "default")
 *   4. EC2 instance metadata (IMDSv2: a token, then the role's
 *      credentials), unless AWS_EC2_METADATA_DISABLED=true; endpoint
 *      AWS_EC2_METADATA_SERVICE_ENDPOINT or http://169.254.169.254
 * `anonymous` skips the chain: requests go unsigned (public buckets).
 *
 * Temporary credentials (web identity, container, credential_process,
 * instance metadata; see docs/s3-client.md for the full order) are refreshed
 * when they are within 5 minutes of expiry; creds_get is thread-safe.
 */
#ifndef S3BD_CREDS_H
#define S3BD_CREDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "s3bd/error.h"

struct creds_config
{
  const char *access_key; /* explicit; NULL: use the chain */
  const char *secret_key;
  const char *session_token;
  const char *profile; /* NULL: AWS_PROFILE, else "default" */
  bool anonymous;
  /* Seconds to wait for instance metadata per request (default 1). */
  unsigned imds_timeout_s;
};

struct s3_creds
{
  char access_key[128];
  char secret_key[128];
  char session_token[4096];
  int64_t expiration; /* seconds since the epoch; 0: never */
  bool anonymous;
};

struct creds_provider;

/* Resolves the chain once (reading files and, last, instance metadata).
 * Fails with S3BD_ECREDS naming every source tried when none yields
 * credentials, when a named profile (cfg->profile or AWS_PROFILE) exists
 * in neither file, when the environment or the profile has only half of a
 * key pair, or when the profile relies on a source s3bd does not implement
 * (role_arn, credential_process, SSO, web identity); with S3BD_EINVAL for
 * half a key pair in cfg, a malformed file (with file and line) or a
 * malformed value, S3BD_EIO for an unreadable file.  A
 * missing file is not an error.  Instance metadata is fetched with libcurl:
 * curl_global_init must have run (s3_client_new sees to it).
 */
int creds_provider_new (const struct creds_config *cfg,
                        struct creds_provider **out, struct s3bd_error *err);
void creds_provider_free (struct creds_provider *p);

/* Copies the current credentials, refreshing temporary ones first if they
 * expire within 5 minutes.  A failed refresh is not an error while the
 * current credentials are still valid (they are returned, and the refresh
 * is retried after 10 s); once they have expired it is S3BD_ECREDS.
 */
int creds_get (struct creds_provider *p, struct s3_creds *out,
               struct s3bd_error *err);

/* Where the credentials came from, for logs: "environment",
 * "profile dev in /root/.aws/credentials", "instance metadata role r",
 * "explicit", "anonymous".  Never a secret.  Fixed at creation, so safe to
 * call from any thread.
 */
const char *creds_source (const struct creds_provider *p);

/* Looks a setting up in the AWS config file for a profile (NULL: AWS_PROFILE,
 * else "default"): "region", "endpoint_url", "s3.addressing_style" (nested
 * sub-section keys are joined with a dot; names match in any case, as in
 * the AWS tools).  Returns a malloc'd value, or NULL when absent, including
 * a missing file or profile (err->code == S3BD_OK), or on error (err set).
 */
char *aws_config_lookup (const char *profile, const char *name,
                         struct s3bd_error *err);

/* The shared files' parser, exposed for tests.  Calls fn for every
 * key = value in every [section] (the section name as written, e.g.
 * "profile dev"; key and value trimmed, the value may hold '=' and '#');
 * nested sub-section keys (a key with an empty value followed by indented
 * key = value lines) arrive as "parent.key", and an empty value without
 * such lines arrives as "".  Comment lines start with '#' or ';'.  fn
 * returns 0 to go on; any other value stops the parse and is returned as
 * is (fn reports its own errors).  Returns 0, or -1 with S3BD_EINVAL and
 * "FILENAME line N: ..." in err for a malformed line (never its text).
 */
typedef int (*ini_fn) (void *arg, const char *section, const char *key,
                       const char *value);
int ini_parse (const char *text, size_t len, const char *filename, ini_fn fn,
               void *arg, struct s3bd_error *err);

/* Parses an ISO 8601 UTC time "2026-11-25T23:36:13Z" or with fractional
 * seconds ("...13.000Z", up to 9 digits) into seconds and nanoseconds since
 * the epoch (either pointer may be NULL).  Returns 0, or -1 for anything
 * else, including out-of-range fields such as February 30.
 */
int parse_iso8601 (const char *s, int64_t *sec, uint32_t *nsec);

#endif
