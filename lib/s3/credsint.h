/* s3bd: what creds.c (the chain), ini.c (the shared files) and imds.c
 * (instance metadata) share.  Private to lib/.
 */
#ifndef S3BD_CREDSINT_H
#define S3BD_CREDSINT_H

#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "s3bd/creds.h"
#include "s3bd/error.h"

/* The metadata endpoint, "http[s]://host[:port]" without a trailing '/',
 * fits in this many bytes with its NUL.
 */
#define IMDS_ENDPOINT_SIZE 512

/* ---- Small helpers ---- */

/* Inline rather than exported: the names are too plain for the library's
 * global namespace.
 */
static inline const char *
getenv_set (const char *name)
{
  const char *v = getenv (name);

  return v && *v ? v : NULL;
}

static inline bool
nonempty (const char *s)
{
  return s && *s;
}

static inline char *
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

/* ---- creds.c ---- */

/* Fills *c with a key pair and an optional session token.  `where` names
 * the source for messages; the values are never quoted.  On error *c is
 * wiped.
 */
int set_creds (struct s3_creds *c, const char *access_key,
               const char *secret_key, const char *session_token,
               const char *where, struct s3bd_error *err);

/* ---- ini.c: the shared files ---- */

/* The path of a shared file: the environment variable (with "~/"
 * expanded, as botocore does), else ~/.aws/LEAF.  An empty path means
 * there is no file (HOME is unset).
 */
int shared_file_path (const char *envname, const char *leaf, char *path,
                      size_t size, struct s3bd_error *err);

/* What one file says about one profile.  The keys are malloc'd secrets:
 * release them with profile_scan_free.
 */
struct profile_scan
{
  const char *profile;
  bool config_file;
  bool found; /* the section exists */
  bool nomem;
  char *access_key;
  char *secret_key;
  char *session_token;
  char *credential_process;
  char *role_arn;
  char *web_identity_token_file;
  char *role_session_name;
  char *source_profile;
  const char *unsupported; /* from unsupported_keys in ini.c */
};

/* Scans the file at path (none when path is empty; a missing file is not
 * an error) for ps->profile.  Returns 0, or -1 with err set.
 */
int profile_scan_file (const char *path, struct profile_scan *ps,
                       struct s3bd_error *err);
/* The same for the text of a file (filename names it in err). */
int profile_scan_text (const char *text, size_t len, const char *filename,
                       struct profile_scan *ps, struct s3bd_error *err);
/* aws_config_lookup's work on the text of a config file: the last value
 * of name in profile's section (malloc'd, a secret to wipe), or NULL
 * when it is not there or on error (err set; it is not cleared first).
 */
char *config_lookup_text (const char *text, size_t len, const char *filename,
                          const char *profile, const char *name,
                          struct s3bd_error *err);
void profile_scan_free (struct profile_scan *ps);

/* ---- imds.c: instance metadata ---- */

/* Step 4: token, role name, the role's credentials.  Fills *c (with its
 * expiration) and role.  Returns 0, or -1 with err set.
 */
int imds_fetch (const char *endpoint, unsigned timeout_s, struct s3_creds *c,
                char *role, size_t role_size, struct s3bd_error *err);

/* The three answers, parsed with no I/O (so tests/fuzz/fuzz-imds.c can
 * reach them).  imds_parse_token: the trimmed body, printable ASCII with
 * no space, into token[size]; -1 (nothing set) when it is not one.
 * imds_parse_role: the first line of body (changed in place), a role
 * name, into role[size]; url names the request in err.  imds_parse_creds:
 * the role's credentials JSON into *c with its expiration.  All return 0,
 * or -1.
 */
int imds_parse_token (char *body, char *token, size_t size);
int imds_parse_role (char *body, const char *url, char *role, size_t size,
                     struct s3bd_error *err);
int imds_parse_creds (const char *body, const char *url, struct s3_creds *c,
                      struct s3bd_error *err);

/* json-c helpers of the JSON credential sources.  json_string: the
 * string member name of obj, or NULL when it is missing or not a string.
 * json_put_wiped: wipes the string values of obj's members named in
 * names[n] (json-c's copies of a secret), then releases obj (may be
 * NULL).
 */
struct json_object;
const char *json_string (struct json_object *obj, const char *name);
void json_put_wiped (struct json_object *obj, const char *const *names,
                     size_t n);

/* ---- sts.c: STS, and HTTP for the credential sources ---- */

/* One HTTP request (a POST when post is not NULL) with extra headers
 * ("Name: value", a NULL-terminated list, or NULL); *out (malloc'd,
 * NUL-terminated; wipe and free it) gets the body and *status the HTTP
 * status.  what names the request in err.
 */
int creds_http (const char *url, const char *post, const char *const *headers,
                unsigned timeout_s, long *status, char **out, size_t *out_len,
                const char *what, struct s3bd_error *err);
/* The trimmed contents of a token file (malloc'd secret), or NULL with
 * err set naming what and the path.
 */
char *creds_read_token_file (const char *path, const char *what,
                             struct s3bd_error *err);
/* An STS answer (AssumeRoleWithWebIdentity or AssumeRole, or an
 * ErrorResponse) into *c with its expiration.
 */
int sts_parse_response (const char *body, size_t len, long status,
                        const char *what, struct s3_creds *c,
                        struct s3bd_error *err);
int sts_assume_role_with_web_identity (const char *endpoint,
                                       const char *role_arn,
                                       const char *session_name,
                                       const char *token_file,
                                       unsigned timeout_s, struct s3_creds *c,
                                       struct s3bd_error *err);
/* AssumeRole: a POST signed (SigV4, service sts, region) with the base
 * credentials; *c gets the role's.  The region is that of the endpoint
 * (us-east-1 for the global one).
 */
int sts_assume_role (const char *endpoint, const char *region,
                     const char *role_arn, const char *session_name,
                     const struct s3_creds *base, unsigned timeout_s,
                     struct s3_creds *c, struct s3bd_error *err);

/* ---- credsource-container.c ---- */

/* Checks a full URI: https anywhere, http only to loopback and the
 * container-credential addresses.  Returns 0, or -1 with err set.
 */
int container_check_uri (const char *uri, struct s3bd_error *err);
int container_fetch (const char *url, const char *token, const char *token_file,
                     unsigned timeout_s, struct s3_creds *c,
                     struct s3bd_error *err);

/* ---- credsource-process.c ---- */

/* Parses credential_process output (Version 1). */
int process_parse_output (const char *out, const char *what, struct s3_creds *c,
                          struct s3bd_error *err);
int process_fetch (const char *command, const char *what, unsigned timeout_s,
                   struct s3_creds *c, struct s3bd_error *err);

#endif
