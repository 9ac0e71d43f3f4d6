/* s3bd: unit tests for lib/creds.c: the shared files' parser, the
 * credentials chain, ISO 8601 times, and instance metadata against a tiny
 * IMDSv2 server on 127.0.0.1 started by the test itself.
 *
 * Every test runs with HOME in a fresh temporary directory, the AWS
 * environment cleared and AWS_EC2_METADATA_DISABLED=true; the IMDS tests
 * re-enable metadata only after pointing its endpoint at their own server,
 * so no traffic ever leaves 127.0.0.1.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "s3bd/creds.h"
#include "s3bd/error.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"

static char tmpdir[256];

/* ---- Fixture ---- */

static const char *const aws_vars[] = {
  "AWS_ACCESS_KEY_ID",
  "AWS_SECRET_ACCESS_KEY",
  "AWS_SESSION_TOKEN",
  "AWS_PROFILE",
  "AWS_SHARED_CREDENTIALS_FILE",
  "AWS_CONFIG_FILE",
  "AWS_EC2_METADATA_SERVICE_ENDPOINT",
  "AWS_WEB_IDENTITY_TOKEN_FILE",
  "AWS_ROLE_ARN",
  "AWS_ROLE_SESSION_NAME",
  "AWS_ENDPOINT_URL",
  "AWS_ENDPOINT_URL_STS",
  "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
  "AWS_CONTAINER_CREDENTIALS_FULL_URI",
  "AWS_CONTAINER_AUTHORIZATION_TOKEN",
  "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
};

static int
setup (void **state)
{
  size_t i;

  snprintf (tmpdir, sizeof tmpdir, "/tmp/test-creds.XXXXXX");
  if (mkdtemp (tmpdir) == NULL)
    return -1;
  setenv ("HOME", tmpdir, 1);
  for (i = 0; i < sizeof aws_vars / sizeof *aws_vars; i++)
    unsetenv (aws_vars[i]);
  setenv ("AWS_EC2_METADATA_DISABLED", "true", 1);
  return 0;
}

static int
remove_cb (const char *path, const struct stat *st, int flag, struct FTW *f)
{
  return remove (path);
}

static int
teardown (void **state)
{
  setenv ("AWS_EC2_METADATA_DISABLED", "true", 1);
  return nftw (tmpdir, remove_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Writes $HOME/REL (creating $HOME/.aws) and returns its path. */
static const char *
write_file (const char *rel, const char *content)
{
  static char path[512];
  char dir[512];
  FILE *f;

  snprintf (dir, sizeof dir, "%s/.aws", tmpdir);
  mkdir (dir, 0700);
  snprintf (path, sizeof path, "%s/%s", tmpdir, rel);
  f = fopen (path, "w");
  assert_non_null (f);
  assert_int_equal (fputs (content, f) >= 0, 1);
  assert_int_equal (fclose (f), 0);
  return path;
}

static struct creds_provider *
new_ok (const struct creds_config *cfg)
{
  struct creds_provider *p = NULL;
  struct s3bd_error err = { 0 };

  if (creds_provider_new (cfg, &p, &err) < 0)
    fail_msg ("creds_provider_new: %s", err.msg);
  assert_non_null (p);
  return p;
}

static void
new_fails (const struct creds_config *cfg, enum s3bd_errcode code,
           struct s3bd_error *err)
{
  struct creds_provider *p = (struct creds_provider *)1;

  memset (err, 0, sizeof *err);
  assert_int_equal (creds_provider_new (cfg, &p, err), -1);
  assert_null (p);
  assert_string_equal (s3bd_errname (err->code), s3bd_errname (code));
  assert_null (strstr (err->msg, SECRET));
}

static void
assert_creds (struct creds_provider *p, const char *ak, const char *sk,
              const char *token)
{
  struct s3_creds c;
  struct s3bd_error err = { 0 };

  if (creds_get (p, &c, &err) < 0)
    fail_msg ("creds_get: %s", err.msg);
  assert_string_equal (c.access_key, ak);
  assert_string_equal (c.secret_key, sk);
  assert_string_equal (c.session_token, token);
  assert_false (c.anonymous);
}

/* ---- ini_parse ---- */

struct entries
{
  char text[2048]; /* "section|key|value\n"... */
  int stop_after;  /* 0: never stop */
  int n;
};

static int
collect (void *arg, const char *section, const char *key, const char *value)
{
  struct entries *e = arg;
  size_t used = strlen (e->text);

  snprintf (e->text + used, sizeof e->text - used, "%s|%s|%s\n", section, key,
            value);
  e->n++;
  return e->stop_after && e->n == e->stop_after ? 7 : 0;
}

static int
parse (const char *text, struct entries *e, struct s3bd_error *err)
{
  memset (e, 0, sizeof *e);
  memset (err, 0, sizeof *err);
  return ini_parse (text, strlen (text), "f.ini", collect, e, err);
}

static void
test_ini_sections_and_comments (void **state)
{
  struct entries e;
  struct s3bd_error err;

  assert_int_equal (parse ("# comment\n"
                           "; another\n"
                           "\n"
                           "[default]\n"
                           "aws_access_key_id = AKIA1\n"
                           "  # indented comment\n"
                           "region=eu-west-1   \n"
                           "[  profile dev  ]  # trailing comment\n"
                           "\t\n"
                           "Region = us-east-2\r\n"
                           "[x]\n",
                           &e, &err),
                    0);
  assert_string_equal (e.text, "default|aws_access_key_id|AKIA1\n"
                               "default|region|eu-west-1\n"
                               "profile dev|Region|us-east-2\n");
}

static void
test_ini_nested_subsection (void **state)
{
  struct entries e;
  struct s3bd_error err;

  assert_int_equal (parse ("[profile dev]\n"
                           "region = eu-west-1\n"
                           "s3 =\n"
                           "  addressing_style = path\n"
                           "\n"
                           "  # comment inside the block\n"
                           "\tmax_concurrent_requests = 20\n"
                           "output = json\n"
                           "empty =\n"
                           "after = 1\n"
                           "last =\n",
                           &e, &err),
                    0);
  assert_string_equal (e.text, "profile dev|region|eu-west-1\n"
                               "profile dev|s3.addressing_style|path\n"
                               "profile dev|s3.max_concurrent_requests|20\n"
                               "profile dev|output|json\n"
                               "profile dev|empty|\n"
                               "profile dev|after|1\n"
                               "profile dev|last|\n");

  /* A section header ends the block, and the parent stays in its own
   * section.
   */
  assert_int_equal (parse ("[a]\ns3 =\n[b]\n  k = v\n", &e, &err), 0);
  assert_string_equal (e.text, "a|s3|\nb|k|v\n");
}

static void
test_ini_value_keeps_equals_and_hash (void **state)
{
  struct entries e;
  struct s3bd_error err;

  assert_int_equal (parse ("[default]\n"
                           "aws_secret_access_key = ab=cd==\n"
                           "note = a # not a comment ; nor this\n",
                           &e, &err),
                    0);
  assert_string_equal (e.text, "default|aws_secret_access_key|ab=cd==\n"
                               "default|note|a # not a comment ; nor this\n");
}

static void
test_ini_bad_line_reports_line_number (void **state)
{
  struct entries e;
  struct s3bd_error err;

  assert_int_equal (parse ("[default]\r\n"
                           "a = 1\r\n"
                           "\r\n"
                           "this line has no equals sign\r\n",
                           &e, &err),
                    -1);
  assert_int_equal (err.code, S3BD_EINVAL);
  assert_string_equal (err.msg, "f.ini line 4: expected 'key = value'");

  assert_int_equal (parse ("[default]\n = value\n", &e, &err), -1);
  assert_string_equal (err.msg, "f.ini line 2: expected 'key = value'");

  assert_int_equal (parse ("[default]\n[]\n", &e, &err), -1);
  assert_string_equal (err.msg, "f.ini line 2: empty section name");

  assert_int_equal (parse ("[default] junk\n", &e, &err), -1);
  assert_string_equal (err.msg, "f.ini line 1: unexpected text after ']'");

  assert_int_equal (
      ini_parse ("[a]\nk = v\0\n", 11, "f.ini", collect, &e, &err), -1);
  assert_string_equal (err.msg, "f.ini line 2: NUL byte");
}

static void
test_ini_key_before_section (void **state)
{
  struct entries e;
  struct s3bd_error err;

  assert_int_equal (parse ("# header\n\nregion = x\n[default]\n", &e, &err),
                    -1);
  assert_string_equal (err.msg, "f.ini line 3: key before any [section]");
  assert_int_equal (e.n, 0);
}

static void
test_ini_unterminated_bracket (void **state)
{
  struct entries e;
  struct s3bd_error err;

  assert_int_equal (parse ("[default]\nk = v\n[profile dev\n", &e, &err), -1);
  assert_string_equal (err.msg, "f.ini line 3: unterminated '['");
}

static void
test_ini_callback_stops_parse (void **state)
{
  struct entries e;
  struct s3bd_error err = { 0 };

  memset (&e, 0, sizeof e);
  e.stop_after = 2;
  assert_int_equal (
      ini_parse ("[a]\nx = 1\ny = 2\nz = 3\n", 22, NULL, collect, &e, &err), 7);
  assert_string_equal (e.text, "a|x|1\na|y|2\n");
}

static void
test_ini_error_hides_secret (void **state)
{
  struct entries e;
  struct s3bd_error err;

  assert_int_equal (parse ("[default]\n"
                           "aws_secret_access_key = " SECRET "\n" SECRET "\n",
                           &e, &err),
                    -1);
  assert_string_equal (err.msg, "f.ini line 3: expected 'key = value'");
  assert_null (strstr (err.msg, SECRET));
}

/* ---- parse_iso8601 ---- */

static void
test_iso8601_valid (void **state)
{
  int64_t sec;
  uint32_t nsec;

  assert_int_equal (parse_iso8601 ("1970-01-01T00:00:00Z", &sec, &nsec), 0);
  assert_int_equal (sec, 0);
  assert_int_equal (nsec, 0);
  assert_int_equal (parse_iso8601 ("2026-11-25T23:36:13Z", &sec, &nsec), 0);
  assert_int_equal (sec, 1795649773);
  assert_int_equal (parse_iso8601 ("2026-11-25T23:36:13.000Z", &sec, &nsec), 0);
  assert_int_equal (sec, 1795649773);
  assert_int_equal (nsec, 0);
  assert_int_equal (parse_iso8601 ("2026-11-25T23:36:13.5Z", &sec, &nsec), 0);
  assert_int_equal (nsec, 500000000);
  assert_int_equal (
      parse_iso8601 ("2026-11-25T23:36:13.123456789Z", &sec, &nsec), 0);
  assert_int_equal (nsec, 123456789);
  assert_int_equal (parse_iso8601 ("2024-02-29T12:00:00Z", &sec, NULL), 0);
  assert_int_equal (sec, 1709208000);
}

static void
test_iso8601_rejects_garbage (void **state)
{
  static const char *const bad[] = {
    "",
    "garbage",
    "2026-11-25",
    "2026-11-25T23:36:13",
    "2026-11-25 23:36:13Z",
    "2026-11-25T23:36:13z",
    "2026-11-25T23:36:13+00:00",
    "2026-11-25T23:36:13ZZ",
    "2026-11-25T23:36:13.Z",
    "2026-11-25T23:36:13.1234567890Z",
    "2026-13-01T00:00:00Z",
    "2026-00-01T00:00:00Z",
    "2026-02-29T00:00:00Z",
    "2026-04-31T00:00:00Z",
    "2026-11-25T24:00:00Z",
    "2026-11-25T23:60:00Z",
    "2026-11-25T23:59:60Z",
    "26-11-25T23:36:13Z",
    "2026-1-25T23:36:13Z",
    "+026-11-25T23:36:13Z",
    "2026-11-25T23:36:1xZ",
  };
  int64_t sec;
  uint32_t nsec;
  size_t i;

  for (i = 0; i < sizeof bad / sizeof *bad; i++)
    if (parse_iso8601 (bad[i], &sec, &nsec) != -1)
      fail_msg ("accepted \"%s\"", bad[i]);
  assert_int_equal (parse_iso8601 (NULL, &sec, &nsec), -1);
}

/* ---- The chain ---- */

static void
test_chain_anonymous (void **state)
{
  struct creds_config cfg = { .anonymous = true };
  struct creds_provider *p;
  struct s3_creds c;
  struct s3bd_error err = { 0 };

  setenv ("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
  setenv ("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
  p = new_ok (&cfg);
  assert_string_equal (creds_source (p), "anonymous");
  assert_int_equal (creds_get (p, &c, &err), 0);
  assert_true (c.anonymous);
  assert_string_equal (c.access_key, "");
  creds_provider_free (p);
}

static void
test_chain_explicit_beats_env_and_file (void **state)
{
  struct creds_config cfg = { .access_key = "AKIAEXPLICIT",
                              .secret_key = "explicitsecret",
                              .session_token = "tok" };
  struct creds_provider *p;

  setenv ("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
  setenv ("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
  write_file (".aws/credentials", "[default]\naws_access_key_id = AKIAFILE\n"
                                  "aws_secret_access_key = filesecret\n");
  p = new_ok (&cfg);
  assert_string_equal (creds_source (p), "explicit");
  assert_creds (p, "AKIAEXPLICIT", "explicitsecret", "tok");
  creds_provider_free (p);
}

static void
test_chain_env_beats_file (void **state)
{
  struct creds_config cfg = { 0 };
  struct creds_provider *p;

  setenv ("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
  setenv ("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
  setenv ("AWS_SESSION_TOKEN", "envtoken", 1);
  write_file (".aws/credentials", "[default]\naws_access_key_id = AKIAFILE\n"
                                  "aws_secret_access_key = filesecret\n");
  p = new_ok (&cfg);
  assert_string_equal (creds_source (p), "environment");
  assert_creds (p, "AKIAENV", "envsecret", "envtoken");
  creds_provider_free (p);
}

static void
test_chain_default_profile_from_credentials_file (void **state)
{
  struct creds_config cfg = { 0 };
  struct creds_provider *p;
  const char *path;
  char want[600];

  path = write_file (".aws/credentials",
                     "[other]\naws_access_key_id = AKIAOTHER\n"
                     "aws_secret_access_key = othersecret\n"
                     "[default]\n"
                     "AWS_ACCESS_KEY_ID = AKIAFILE\n"
                     "aws_secret_access_key = file=secret\n");
  snprintf (want, sizeof want, "profile default in %s", path);
  p = new_ok (&cfg);
  assert_string_equal (creds_source (p), want);
  assert_creds (p, "AKIAFILE", "file=secret", "");
  creds_provider_free (p);
}

static void
test_chain_credentials_file_beats_config_file (void **state)
{
  struct creds_config cfg = { 0 };
  struct creds_provider *p;

  write_file (".aws/config", "[default]\naws_access_key_id = AKIACONF\n"
                             "aws_secret_access_key = confsecret\n");
  write_file (".aws/credentials", "[default]\naws_access_key_id = AKIACRED\n"
                                  "aws_secret_access_key = credsecret\n");
  p = new_ok (&cfg);
  assert_creds (p, "AKIACRED", "credsecret", "");
  creds_provider_free (p);
}

static void
test_chain_explicit_profile_skips_env (void **state)
{
  struct creds_config cfg = { .profile = "dev" };
  struct creds_provider *p;

  setenv ("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
  setenv ("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
  write_file (".aws/credentials", "[dev]\naws_access_key_id = AKIADEV\n"
                                  "aws_secret_access_key = devsecret\n"
                                  "aws_session_token = devtoken\n");
  p = new_ok (&cfg);
  assert_creds (p, "AKIADEV", "devsecret", "devtoken");
  creds_provider_free (p);
}

static void
test_chain_aws_profile_selects_profile (void **state)
{
  struct creds_config cfg = { 0 };
  struct creds_provider *p;
  const char *path;
  char want[600];

  path = write_file (".aws/credentials",
                     "[default]\naws_access_key_id = AKIADEFAULT\n"
                     "aws_secret_access_key = defaultsecret\n"
                     "[dev]\naws_access_key_id = AKIADEV\n"
                     "aws_secret_access_key = devsecret\n");
  snprintf (want, sizeof want, "profile dev in %s", path);
  setenv ("AWS_PROFILE", "dev", 1);
  p = new_ok (&cfg);
  assert_string_equal (creds_source (p), want);
  assert_creds (p, "AKIADEV", "devsecret", "");
  creds_provider_free (p);

  /* Unlike an explicit profile, AWS_PROFILE does not skip the
   * environment.
   */
  setenv ("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
  setenv ("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
  p = new_ok (&cfg);
  assert_string_equal (creds_source (p), "environment");
  creds_provider_free (p);
}

static void
test_chain_config_file_needs_profile_prefix (void **state)
{
  struct creds_config cfg = { .profile = "x" };
  struct creds_provider *p;
  struct s3bd_error err;
  const char *path;
  char want[600];

  /* "[x]" is not a profile in the config file... */
  write_file (".aws/config", "[x]\naws_access_key_id = AKIAWRONG\n"
                             "aws_secret_access_key = wrongsecret\n");
  new_fails (&cfg, S3BD_ECREDS, &err);
  assert_non_null (strstr (err.msg, "profile x not found"));

  /* ... "[profile x]" is, and "[profile x]" is not one in the
   * credentials file.
   */
  write_file (".aws/credentials", "[profile x]\naws_access_key_id = A\n"
                                  "aws_secret_access_key = B\n");
  path = write_file (".aws/config", "[x]\naws_access_key_id = AKIAWRONG\n"
                                    "aws_secret_access_key = wrongsecret\n"
                                    "[profile   x]\naws_access_key_id = AKIAX\n"
                                    "aws_secret_access_key = xsecret\n");
  snprintf (want, sizeof want, "profile x in %s", path);
  p = new_ok (&cfg);
  assert_string_equal (creds_source (p), want);
  assert_creds (p, "AKIAX", "xsecret", "");
  creds_provider_free (p);
}

static void
test_chain_files_from_environment_paths (void **state)
{
  struct creds_config cfg = { 0 };
  struct creds_provider *p;
  char want[600];

  write_file ("mycreds", "[default]\naws_access_key_id = AKIAMINE\n"
                         "aws_secret_access_key = minesecret\n");
  setenv ("AWS_SHARED_CREDENTIALS_FILE", "~/mycreds", 1);
  setenv ("AWS_CONFIG_FILE", "/dev/null", 1);
  snprintf (want, sizeof want, "profile default in %s/mycreds", tmpdir);
  p = new_ok (&cfg);
  assert_string_equal (creds_source (p), want);
  assert_creds (p, "AKIAMINE", "minesecret", "");
  creds_provider_free (p);
}

static void
test_chain_missing_named_profile (void **state)
{
  struct creds_config cfg = { .profile = "nosuch" };
  struct s3bd_error err;
  char want[1200];

  write_file (".aws/credentials", "[default]\naws_access_key_id = AKIA1\n"
                                  "aws_secret_access_key = " SECRET "\n");
  new_fails (&cfg, S3BD_ECREDS, &err);
  snprintf (want, sizeof want,
            "profile nosuch not found in %s/.aws/credentials or "
            "%s/.aws/config",
            tmpdir, tmpdir);
  assert_string_equal (err.msg, want);

  /* The same through AWS_PROFILE. */
  cfg.profile = NULL;
  setenv ("AWS_PROFILE", "nosuch", 1);
  new_fails (&cfg, S3BD_ECREDS, &err);
  assert_string_equal (err.msg, want);
}

static void
test_chain_env_half_set (void **state)
{
  struct creds_config cfg = { 0 };
  struct s3bd_error err;

  setenv ("AWS_SECRET_ACCESS_KEY", SECRET, 1);
  new_fails (&cfg, S3BD_ECREDS, &err);
  assert_string_equal (err.msg, "environment: AWS_SECRET_ACCESS_KEY is set "
                                "but AWS_ACCESS_KEY_ID is not");

  unsetenv ("AWS_SECRET_ACCESS_KEY");
  setenv ("AWS_ACCESS_KEY_ID", "AKIA1", 1);
  new_fails (&cfg, S3BD_ECREDS, &err);
  assert_string_equal (err.msg, "environment: AWS_ACCESS_KEY_ID is set "
                                "but AWS_SECRET_ACCESS_KEY is not");
}

static void
test_chain_explicit_half_set (void **state)
{
  struct creds_config cfg = { .secret_key = SECRET };
  struct s3bd_error err;

  new_fails (&cfg, S3BD_EINVAL, &err);
  assert_string_equal (err.msg, "explicit credentials: secret key given "
                                "without access key");
}

static void
test_chain_profile_half_set (void **state)
{
  struct creds_config cfg = { 0 };
  struct s3bd_error err;

  write_file (".aws/credentials",
              "[default]\naws_secret_access_key = " SECRET "\n");
  new_fails (&cfg, S3BD_ECREDS, &err);
  assert_non_null (strstr (err.msg, "aws_secret_access_key without "
                                    "aws_access_key_id"));
}

static void
test_chain_nothing_found_lists_sources (void **state)
{
  struct creds_config cfg = { 0 };
  struct s3bd_error err;
  char want[1200];

  /* A profile without keys is not an error: the chain goes on. */
  write_file (".aws/config", "[default]\nregion = eu-west-1\n");
  new_fails (&cfg, S3BD_ECREDS, &err);
  snprintf (want, sizeof want,
            "no credentials found: not in explicit settings, environment "
            "(AWS_ACCESS_KEY_ID, AWS_WEB_IDENTITY_TOKEN_FILE), profile "
            "default in %s/.aws/credentials or %s/.aws/config, container "
            "credentials (AWS_CONTAINER_CREDENTIALS_*_URI not set), instance "
            "metadata (disabled by "
            "AWS_EC2_METADATA_DISABLED); set them or use anonymous access",
            tmpdir, tmpdir);
  assert_string_equal (err.msg, want);

  /* Case-insensitive, like the AWS tools. */
  setenv ("AWS_EC2_METADATA_DISABLED", "TRUE", 1);
  new_fails (&cfg, S3BD_ECREDS, &err);
  assert_string_equal (err.msg, want);
}

static void
test_chain_malformed_file (void **state)
{
  struct creds_config cfg = { 0 };
  struct s3bd_error err;
  const char *path;
  char want[600];

  path = write_file (".aws/credentials", "[default]\n"
                                         "aws_access_key_id = AKIA1\n"
                                         "aws_secret_access_key " SECRET "\n");
  snprintf (want, sizeof want, "%s line 3: expected 'key = value'", path);
  new_fails (&cfg, S3BD_EINVAL, &err);
  assert_string_equal (err.msg, want);
}

static void
test_chain_unreadable_file (void **state)
{
  struct creds_config cfg = { 0 };
  struct s3bd_error err;
  char path[512];

  /* A directory is unreadable as a file, even for root. */
  snprintf (path, sizeof path, "%s/.aws", tmpdir);
  assert_int_equal (mkdir (path, 0700), 0);
  snprintf (path, sizeof path, "%s/.aws/credentials", tmpdir);
  assert_int_equal (mkdir (path, 0700), 0);
  new_fails (&cfg, S3BD_EIO, &err);
  assert_non_null (strstr (err.msg, path));
}

static void
test_chain_value_too_long_hides_secret (void **state)
{
  struct creds_config cfg = { 0 };
  struct s3bd_error err;
  char longkey[200];

  memset (longkey, 'S', sizeof longkey - 1);
  longkey[sizeof longkey - 1] = '\0';
  memcpy (longkey, SECRET, strlen (SECRET));
  setenv ("AWS_ACCESS_KEY_ID", "AKIA1", 1);
  setenv ("AWS_SECRET_ACCESS_KEY", longkey, 1);
  new_fails (&cfg, S3BD_EINVAL, &err);
  assert_string_equal (err.msg, "environment: the secret access key is too "
                                "long (199 bytes, at most 127)");

  setenv ("AWS_SECRET_ACCESS_KEY", SECRET "\r\nX-Injected: 1", 1);
  new_fails (&cfg, S3BD_EINVAL, &err);
  assert_string_equal (err.msg, "environment: the secret access key "
                                "contains a space or a control character");
}

static void
test_chain_unsupported_profile_source (void **state)
{
  struct creds_config cfg = { .profile = "sso" };
  struct s3bd_error err;

  write_file (".aws/config", "[profile sso]\n"
                             "sso_start_url = https://x/" SECRET "\n");
  new_fails (&cfg, S3BD_ECREDS, &err);
  assert_non_null (strstr (err.msg, "uses sso_start_url"));
}

/* ---- credential_process ---- */

static const char *
process_profile (const char *json, int status)
{
  static char cmd[4096], script[512];

  snprintf (script, sizeof script, "%s", write_file ("proc.sh", ""));
  snprintf (cmd, sizeof cmd, "#!/bin/sh\ncat <<'EOF'\n%s\nEOF\nexit %d\n", json,
            status);
  write_file ("proc.sh", cmd);
  snprintf (cmd, sizeof cmd, "[default]\ncredential_process = sh %s\n", script);
  write_file (".aws/config", cmd);
  return script;
}

static void
test_process_credentials (void **state)
{
  struct creds_provider *p;

  process_profile ("{\"Version\": 1, \"AccessKeyId\": \"AKIAPROC\", "
                   "\"SecretAccessKey\": \"" SECRET "\", "
                   "\"SessionToken\": \"tok\", "
                   "\"Expiration\": \"2099-01-01T00:00:00Z\"}",
                   0);
  p = new_ok (NULL);
  assert_creds (p, "AKIAPROC", SECRET, "tok");
  assert_non_null (strstr (creds_source (p), "credential_process of profile "
                                             "default"));
  creds_provider_free (p);
}

static void
test_process_wrong_answers (void **state)
{
  static const struct
  {
    const char *json;
    int status;
    const char *want;
  } cases[] = {
    { "{\"Version\": 2, \"AccessKeyId\": \"A\", \"SecretAccessKey\": "
      "\"" SECRET "\"}",
      0, "output has no \"Version\": 1" },
    { "not json " SECRET, 0, "output is not a JSON object" },
    { "{\"Version\": 1, \"AccessKeyId\": \"A\"}", 0,
      "output without SecretAccessKey" },
    { "{\"Version\": 1, \"AccessKeyId\": \"A\", \"SecretAccessKey\": "
      "\"" SECRET "\", \"Expiration\": \"soon\"}",
      0, "malformed Expiration" },
    { "{\"Version\": 1, \"AccessKeyId\": \"A\", \"SecretAccessKey\": "
      "\"" SECRET "\"}",
      3, "the command exited with status 3" },
  };
  struct s3bd_error err;
  size_t i;

  for (i = 0; i < sizeof cases / sizeof *cases; i++)
    {
      process_profile (cases[i].json, cases[i].status);
      new_fails (NULL, S3BD_ECREDS, &err);
      if (strstr (err.msg, cases[i].want) == NULL
          || strstr (err.msg, "credential_process of profile default") == NULL)
        fail_msg ("case %zu: %s", i, err.msg);
    }
}

/* ---- The chain's order, as a table ---- */

static void
test_chain_order_table (void **state)
{
  /* Each source is configured so that it either yields keys (static ones,
   * a credential_process) or fails in a way that names it (a missing token
   * file, a container URI refused before any request): a source further
   * down the chain never gets asked once an earlier one is configured.
   */
  static const struct
  {
    const char *env;    /* "NAME=value;..." */
    const char *config; /* ~/.aws/config */
    const char *want;   /* the access key, or "!" and part of the error */
  } cases[] = {
    { "AWS_ACCESS_KEY_ID=AKIAENV;AWS_SECRET_ACCESS_KEY=s;"
      "AWS_WEB_IDENTITY_TOKEN_FILE=/nonexistent;AWS_ROLE_ARN=arn:r",
      "", "AKIAENV" },
    { "AWS_WEB_IDENTITY_TOKEN_FILE=/nonexistent;AWS_ROLE_ARN=arn:r;"
      "AWS_ENDPOINT_URL=http://127.0.0.1:9",
      "[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = s\n",
      "!web identity: cannot read token file /nonexistent" },
    { "AWS_WEB_IDENTITY_TOKEN_FILE=/nonexistent",
      "[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = s\n",
      "!web identity: AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is "
      "not" },
    { "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://example.com/creds",
      "[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = s\n",
      "AKIAFILE" },
    { "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://example.com/creds", "",
      "!host example.com is not allowed over plain http" },
    { "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=creds", "",
      "!AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must be a path" },
    { "AWS_ENDPOINT_URL=http://127.0.0.1:9",
      "[default]\nweb_identity_token_file = /nonexistent\nrole_arn = arn:r\n",
      "!web identity: cannot read token file /nonexistent" },
    { "", "[default]\nrole_arn = arn:r\n",
      "!role_arn without source_profile or web_identity_token_file" },
    { "", "[default]\nrole_arn = arn:r\nsource_profile = base\n",
      "!source_profile base: profile base not found in" },
    { "", "[default]\nrole_arn = arn:r\nsource_profile = default\n",
      "!source_profile is the profile itself, which has no static keys" },
    { "",
      "[default]\nrole_arn = arn:r\nsource_profile = a\n"
      "[profile a]\nrole_arn = arn:a\nsource_profile = b\n"
      "[profile b]\nrole_arn = arn:b\nsource_profile = a\n",
      "!source_profile cycle default -> a -> b -> a" },
    { "",
      "[default]\nrole_arn = arn:r\nsource_profile = a\n"
      "[profile a]\nrole_arn = arn:a\nsource_profile = b\n"
      "[profile b]\nrole_arn = arn:b\nsource_profile = c\n"
      "[profile c]\nrole_arn = arn:c\nsource_profile = d\n"
      "[profile d]\nrole_arn = arn:d\nsource_profile = e\n"
      "[profile e]\naws_access_key_id = AKIAE\naws_secret_access_key = s\n",
      "!the source_profile chain default -> a -> b -> c -> d -> e is longer "
      "than 5 profiles" },
    { "AWS_ENDPOINT_URL=http://127.0.0.1:9",
      "[default]\nrole_arn = arn:r\nsource_profile = k\n"
      "[profile k]\naws_access_key_id = AKIAK\naws_secret_access_key = s\n",
      "!assume role: STS http://127.0.0.1:9" },
    { "",
      "[default]\nrole_arn = arn:r\nsource_profile = k\n"
      "web_identity_token_file = /t\n",
      "!both source_profile and web_identity_token_file" },
    { "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://example.com/creds",
      "[default]\ncredential_process = false\n",
      "!credential_process of profile default" },
  };
  size_t i;

  for (i = 0; i < sizeof cases / sizeof *cases; i++)
    {
      char env[512], *save, *kv;
      struct creds_provider *p = NULL;
      struct s3bd_error err = { 0 };
      size_t j;

      for (j = 0; j < sizeof aws_vars / sizeof *aws_vars; j++)
        unsetenv (aws_vars[j]);
      snprintf (env, sizeof env, "%s", cases[i].env);
      for (kv = strtok_r (env, ";", &save); kv;
           kv = strtok_r (NULL, ";", &save))
        {
          char *eq = strchr (kv, '=');

          *eq = '\0';
          setenv (kv, eq + 1, 1);
        }
      write_file (".aws/config", cases[i].config);
      if (cases[i].want[0] == '!')
        {
          if (creds_provider_new (NULL, &p, &err) == 0)
            fail_msg ("case %zu: succeeded (%s)", i, creds_source (p));
          if (strstr (err.msg, cases[i].want + 1) == NULL)
            fail_msg ("case %zu: %s", i, err.msg);
        }
      else
        {
          if (creds_provider_new (NULL, &p, &err) < 0)
            fail_msg ("case %zu: %s", i, err.msg);
          assert_creds (p, cases[i].want, "s", "");
          creds_provider_free (p);
        }
    }
}

/* ---- aws_config_lookup ---- */

static void
test_config_lookup (void **state)
{
  struct s3bd_error err;
  char *v;

  write_file (".aws/config", "[default]\n"
                             "region = eu-west-1\n"
                             "[profile dev]\n"
                             "Region = us-east-2\n"
                             "endpoint_url = http://localhost:9000\n"
                             "s3 =\n"
                             "  addressing_style = path\n");
  v = aws_config_lookup (NULL, "region", &err);
  assert_string_equal (v, "eu-west-1");
  free (v);
  v = aws_config_lookup ("dev", "region", &err);
  assert_string_equal (v, "us-east-2");
  free (v);
  v = aws_config_lookup ("dev", "s3.addressing_style", &err);
  assert_string_equal (v, "path");
  free (v);

  setenv ("AWS_PROFILE", "dev", 1);
  v = aws_config_lookup (NULL, "endpoint_url", &err);
  assert_string_equal (v, "http://localhost:9000");
  free (v);

  err.code = S3BD_EIO;
  assert_null (aws_config_lookup (NULL, "output", &err));
  assert_int_equal (err.code, S3BD_OK);
  assert_null (aws_config_lookup ("nosuch", "region", &err));
  assert_int_equal (err.code, S3BD_OK);

  setenv ("AWS_CONFIG_FILE", "/nonexistent/config", 1);
  assert_null (aws_config_lookup (NULL, "region", &err));
  assert_int_equal (err.code, S3BD_OK);

  unsetenv ("AWS_CONFIG_FILE");
  write_file (".aws/config", "[default]\nregion\n");
  assert_null (aws_config_lookup (NULL, "region", &err));
  assert_int_equal (err.code, S3BD_EINVAL);
  assert_non_null (strstr (err.msg, "config line 2:"));
}

/* ---- Instance metadata ---- */

/* A tiny IMDSv2 server: one request per connection.  Tokens are
 * "token-N"; a GET must carry one of the valid ones or gets a 401.
 */
struct imds_server
{
  int fd;
  int port;
  pthread_t thread;
  atomic_bool stop;
  /* Behaviour, set before start. */
  int token_status;        /* answer to the token PUT (200) */
  bool expire_first_token; /* 401 to the first GET with a token */
  const char *role;        /* NULL: 404 on the role list */
  const char *keys[2];     /* i-th credentials request gets keys[i] */
  long expires_in[2];      /* seconds from now */
  int fail_from;           /* credentials requests from this on: 500 */
  /* Counters. */
  atomic_int requests, token_requests, list_requests, creds_requests;
  atomic_int unauthorized, bad_ttl;
  int tokens_issued, first_valid_token;
};

static void
respond (int fd, int status, const char *body)
{
  char buf[4096];
  int n;

  n = snprintf (buf, sizeof buf,
                "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n"
                "Connection: close\r\n\r\n%s",
                status, strlen (body), body);
  if (write (fd, buf, (size_t)n) != n)
    perror ("write");
}

/* The value of header NAME in the request, or NULL. */
static char *
header (const char *req, const char *name, char *buf, size_t size)
{
  char pattern[128];
  const char *h, *e;

  snprintf (pattern, sizeof pattern, "\r\n%s:", name);
  h = strcasestr (req, pattern);
  if (h == NULL)
    return NULL;
  h += strlen (pattern);
  while (*h == ' ')
    h++;
  e = strstr (h, "\r\n");
  if (e == NULL)
    return NULL;
  snprintf (buf, size, "%.*s", (int)(e - h), h);
  return buf;
}

static bool
token_ok (struct imds_server *s, const char *req)
{
  char buf[128];
  int n;

  if (header (req, "X-aws-ec2-metadata-token", buf, sizeof buf) == NULL
      || sscanf (buf, "token-%d", &n) != 1)
    return false;
  return n >= s->first_valid_token && n <= s->tokens_issued;
}

/* The status of the answer to REQ, with its body in BODY. */
static int
route (struct imds_server *s, const char *req, char *body, size_t size)
{
  static const char role_path[] = "/latest/meta-data/iam/security-credentials/";
  char method[16], path[512], buf[128], when[32];
  time_t t;
  struct tm tm;
  int i;

  body[0] = '\0';
  if (sscanf (req, "%15s %511s", method, path) != 2)
    return 400;
  s->requests++;

  if (strcmp (method, "PUT") == 0 && strcmp (path, "/latest/api/token") == 0)
    {
      s->token_requests++;
      if (s->token_status != 200)
        return s->token_status;
      if (!header (req, "X-aws-ec2-metadata-token-ttl-seconds", buf, sizeof buf)
          || strcmp (buf, "21600") != 0)
        {
          s->bad_ttl++;
          return 400;
        }
      snprintf (body, size, "token-%d", ++s->tokens_issued);
      return 200;
    }
  if (strcmp (method, "GET") != 0
      || strncmp (path, role_path, strlen (role_path)) != 0)
    return 404;
  if (!token_ok (s, req))
    {
      s->unauthorized++;
      return 401;
    }
  if (s->expire_first_token)
    {
      s->expire_first_token = false;
      s->first_valid_token = s->tokens_issued + 1;
      s->unauthorized++;
      return 401;
    }

  if (strcmp (path, role_path) == 0)
    {
      s->list_requests++;
      if (s->role == NULL)
        return 404;
      snprintf (body, size, "%s\nsecond-role\n", s->role);
      return 200;
    }
  if (s->role == NULL || strcmp (path + strlen (role_path), s->role) != 0)
    return 404;
  i = ++s->creds_requests;
  if (s->fail_from && i >= s->fail_from)
    return 500;
  i = i > 1 ? 1 : 0;
  t = time (NULL) + s->expires_in[i];
  gmtime_r (&t, &tm);
  strftime (when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  snprintf (body, size,
            "{\n  \"Code\" : \"Success\",\n"
            "  \"LastUpdated\" : \"2026-01-01T00:00:00Z\",\n"
            "  \"Type\" : \"AWS-HMAC\",\n"
            "  \"AccessKeyId\" : \"%s\",\n"
            "  \"SecretAccessKey\" : \"%s-%s\",\n"
            "  \"Token\" : \"session-%s\",\n"
            "  \"Expiration\" : \"%s\"\n}\n",
            s->keys[i], SECRET, s->keys[i], s->keys[i], when);
  return 200;
}

static void
serve_one (struct imds_server *s, int fd)
{
  char req[8192], body[2048];
  size_t len = 0;
  ssize_t n;
  int status;

  req[0] = '\0';
  while (len < sizeof req - 1 && !strstr (req, "\r\n\r\n"))
    {
      n = read (fd, req + len, sizeof req - 1 - len);
      if (n <= 0)
        return;
      len += (size_t)n;
      req[len] = '\0';
    }
  status = route (s, req, body, sizeof body);
  respond (fd, status, body);
}

static void *
serve (void *arg)
{
  struct imds_server *s = arg;

  while (!s->stop)
    {
      struct pollfd pfd = { .fd = s->fd, .events = POLLIN };
      int c;

      if (poll (&pfd, 1, 50) <= 0)
        continue;
      c = accept (s->fd, NULL, NULL);
      if (c < 0)
        continue;
      serve_one (s, c);
      close (c);
    }
  return NULL;
}

static void
server_start (struct imds_server *s)
{
  struct sockaddr_in sin = { .sin_family = AF_INET };
  socklen_t sl = sizeof sin;
  char url[64];

  if (s->token_status == 0)
    s->token_status = 200;
  s->first_valid_token = 1;
  sin.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  s->fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true (s->fd >= 0);
  assert_int_equal (bind (s->fd, (struct sockaddr *)&sin, sizeof sin), 0);
  assert_int_equal (listen (s->fd, 16), 0);
  assert_int_equal (getsockname (s->fd, (struct sockaddr *)&sin, &sl), 0);
  s->port = ntohs (sin.sin_port);
  assert_int_equal (pthread_create (&s->thread, NULL, serve, s), 0);

  snprintf (url, sizeof url, "http://127.0.0.1:%d/", s->port);
  setenv ("AWS_EC2_METADATA_SERVICE_ENDPOINT", url, 1);
  unsetenv ("AWS_EC2_METADATA_DISABLED");
}

static void
server_stop (struct imds_server *s)
{
  setenv ("AWS_EC2_METADATA_DISABLED", "true", 1);
  s->stop = true;
  pthread_join (s->thread, NULL);
  close (s->fd);
}

static void
test_imds_credentials (void **state)
{
  struct imds_server s
      = { .role = "my-role", .keys = { "ASIA1" }, .expires_in = { 6 * 3600 } };
  struct creds_config cfg = { 0 };
  struct creds_provider *p;
  struct s3_creds c;
  struct s3bd_error err = { 0 };
  time_t now = time (NULL);

  server_start (&s);
  p = new_ok (&cfg);
  assert_string_equal (creds_source (p), "instance metadata role my-role");
  assert_int_equal (s.token_requests, 1);
  assert_int_equal (s.list_requests, 1);
  assert_int_equal (s.creds_requests, 1);
  assert_int_equal (s.requests, 3);
  assert_int_equal (s.unauthorized, 0);
  assert_int_equal (s.bad_ttl, 0);

  assert_int_equal (creds_get (p, &c, &err), 0);
  assert_string_equal (c.access_key, "ASIA1");
  assert_string_equal (c.secret_key, SECRET "-ASIA1");
  assert_string_equal (c.session_token, "session-ASIA1");
  assert_in_range (c.expiration, now + 6 * 3600 - 5, now + 6 * 3600 + 5);
  assert_int_equal (s.requests, 3); /* far from expiry: no refresh */
  creds_provider_free (p);
  server_stop (&s);
}

static void
test_imds_refresh_near_expiry (void **state)
{
  struct imds_server s = { .role = "r",
                           .keys = { "ASIA1", "ASIA2" },
                           .expires_in = { 120, 6 * 3600 } };
  struct creds_config cfg = { 0 };
  struct creds_provider *p;

  server_start (&s);
  p = new_ok (&cfg);
  assert_int_equal (s.requests, 3);
  /* Two minutes left: creds_get fetches the next ones first. */
  assert_creds (p, "ASIA2", SECRET "-ASIA2", "session-ASIA2");
  assert_int_equal (s.requests, 6);
  assert_int_equal (s.creds_requests, 2);
  assert_creds (p, "ASIA2", SECRET "-ASIA2", "session-ASIA2");
  assert_int_equal (s.requests, 6);
  assert_int_equal (s.unauthorized, 0);
  creds_provider_free (p);
  server_stop (&s);
}

struct getter
{
  pthread_t thread;
  struct creds_provider *p;
  struct s3_creds c;
  int r;
};

static void *
getter_run (void *arg)
{
  struct getter *g = arg;
  struct s3bd_error err = { 0 };

  g->r = creds_get (g->p, &g->c, &err);
  return NULL;
}

static void
test_imds_concurrent_callers_refresh_once (void **state)
{
  struct imds_server s = { .role = "r",
                           .keys = { "ASIA1", "ASIA2" },
                           .expires_in = { 120, 6 * 3600 } };
  struct creds_config cfg = { 0 };
  struct getter g[8];
  size_t i;

  server_start (&s);
  g[0].p = new_ok (&cfg);
  for (i = 0; i < 8; i++)
    {
      g[i].p = g[0].p;
      assert_int_equal (pthread_create (&g[i].thread, NULL, getter_run, &g[i]),
                        0);
    }
  for (i = 0; i < 8; i++)
    {
      pthread_join (g[i].thread, NULL);
      assert_int_equal (g[i].r, 0);
      assert_string_equal (g[i].c.access_key, "ASIA2");
    }
  assert_int_equal (s.creds_requests, 2);
  assert_int_equal (s.requests, 6);
  creds_provider_free (g[0].p);
  server_stop (&s);
}

static void
test_imds_refresh_failure_keeps_valid_creds (void **state)
{
  struct imds_server s = { .role = "r",
                           .keys = { "ASIA1", "ASIA2" },
                           .expires_in = { 120, 6 * 3600 },
                           .fail_from = 2 };
  struct creds_config cfg = { 0 };
  struct creds_provider *p;

  server_start (&s);
  p = new_ok (&cfg);
  assert_creds (p, "ASIA1", SECRET "-ASIA1", "session-ASIA1");
  assert_int_equal (s.creds_requests, 2);
  /* The failed refresh is not retried at once. */
  assert_creds (p, "ASIA1", SECRET "-ASIA1", "session-ASIA1");
  assert_int_equal (s.creds_requests, 2);
  creds_provider_free (p);
  server_stop (&s);
}

static void
test_imds_refresh_failure_after_expiry (void **state)
{
  struct imds_server s = { .role = "r",
                           .keys = { "ASIA1", "ASIA2" },
                           .expires_in = { -60, 6 * 3600 },
                           .fail_from = 2 };
  struct creds_config cfg = { 0 };
  struct creds_provider *p;
  struct s3_creds c;
  struct s3bd_error err = { 0 };

  server_start (&s);
  p = new_ok (&cfg);
  assert_int_equal (creds_get (p, &c, &err), -1);
  assert_int_equal (err.code, S3BD_ECREDS);
  assert_non_null (strstr (err.msg, "HTTP 500"));
  assert_non_null (strstr (err.msg, "expired at"));
  assert_null (strstr (err.msg, SECRET));
  /* Expired credentials are never served: every call tries again. */
  assert_int_equal (creds_get (p, &c, &err), -1);
  assert_int_equal (s.creds_requests, 3);
  creds_provider_free (p);
  server_stop (&s);
}

static void
test_imds_token_refused_gets_401 (void **state)
{
  /* The token request fails with 403 (as through a proxy with a hop limit):
   * the SDKs go on without a token, and this server answers 401.
   */
  struct imds_server s = { .token_status = 403,
                           .role = "r",
                           .keys = { "ASIA1" },
                           .expires_in = { 3600 } };
  struct creds_config cfg = { 0 };
  struct s3bd_error err;

  server_start (&s);
  new_fails (&cfg, S3BD_ECREDS, &err);
  assert_non_null (strstr (err.msg, "instance metadata (http://127.0.0.1:"));
  assert_non_null (strstr (err.msg, "HTTP 401: an IMDSv2 token is required, "
                                    "but the token request returned HTTP 403"));
  assert_int_equal (s.token_requests, 1);
  assert_int_equal (s.unauthorized, 1);
  assert_int_equal (s.requests, 2);
  server_stop (&s);
}

static void
test_imds_expired_token_is_renewed (void **state)
{
  struct imds_server s = { .expire_first_token = true,
                           .role = "r",
                           .keys = { "ASIA1" },
                           .expires_in = { 3600 } };
  struct creds_config cfg = { 0 };
  struct creds_provider *p;

  server_start (&s);
  p = new_ok (&cfg);
  assert_creds (p, "ASIA1", SECRET "-ASIA1", "session-ASIA1");
  assert_int_equal (s.token_requests, 2);
  assert_int_equal (s.unauthorized, 1);
  assert_int_equal (s.requests, 5);
  creds_provider_free (p);
  server_stop (&s);
}

static void
test_imds_no_role (void **state)
{
  struct imds_server s = { .role = NULL };
  struct creds_config cfg = { 0 };
  struct s3bd_error err;

  server_start (&s);
  new_fails (&cfg, S3BD_ECREDS, &err);
  assert_non_null (strstr (err.msg, "no IAM role attached"));
  assert_int_equal (s.requests, 2);
  server_stop (&s);
}

/* Found by tests/fuzz/fuzz-imds.c: an empty AccessKeyId was taken, and
 * every request then refused by S3 as a bad signature.
 */
static void
test_imds_empty_access_key (void **state)
{
  struct imds_server s
      = { .role = "r", .keys = { "" }, .expires_in = { 3600 } };
  struct creds_config cfg = { 0 };
  struct s3bd_error err;

  server_start (&s);
  new_fails (&cfg, S3BD_ECREDS, &err);
  assert_non_null (strstr (err.msg, "credentials with an empty AccessKeyId"));
  assert_int_equal (s.creds_requests, 1);
  server_stop (&s);
}

static void
test_imds_disabled_makes_no_request (void **state)
{
  struct imds_server s
      = { .role = "r", .keys = { "ASIA1" }, .expires_in = { 3600 } };
  struct creds_config cfg = { 0 };
  struct s3bd_error err;

  server_start (&s);
  setenv ("AWS_EC2_METADATA_DISABLED", "True", 1);
  new_fails (&cfg, S3BD_ECREDS, &err);
  assert_non_null (strstr (err.msg, "instance metadata (disabled by "
                                    "AWS_EC2_METADATA_DISABLED)"));
  assert_int_equal (s.requests, 0);
  server_stop (&s);
}

static void
test_imds_unreachable (void **state)
{
  struct sockaddr_in sin = { .sin_family = AF_INET };
  socklen_t sl = sizeof sin;
  struct creds_config cfg = { 0 };
  struct s3bd_error err;
  char url[64];
  int fd;

  /* A port that was free a moment ago: connection refused. */
  sin.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  fd = socket (AF_INET, SOCK_STREAM, 0);
  assert_int_equal (bind (fd, (struct sockaddr *)&sin, sizeof sin), 0);
  assert_int_equal (getsockname (fd, (struct sockaddr *)&sin, &sl), 0);
  close (fd);
  snprintf (url, sizeof url, "http://127.0.0.1:%d", ntohs (sin.sin_port));
  setenv ("AWS_EC2_METADATA_SERVICE_ENDPOINT", url, 1);
  unsetenv ("AWS_EC2_METADATA_DISABLED");
  new_fails (&cfg, S3BD_ECREDS, &err);
  assert_non_null (strstr (err.msg, "no credentials found"));
  assert_non_null (strstr (err.msg, url));
}

#define T(f) cmocka_unit_test_setup_teardown (f, setup, teardown)

int
main (void)
{
  const struct CMUnitTest tests[] = {
    T (test_ini_sections_and_comments),
    T (test_ini_nested_subsection),
    T (test_ini_value_keeps_equals_and_hash),
    T (test_ini_bad_line_reports_line_number),
    T (test_ini_key_before_section),
    T (test_ini_unterminated_bracket),
    T (test_ini_callback_stops_parse),
    T (test_ini_error_hides_secret),
    T (test_iso8601_valid),
    T (test_iso8601_rejects_garbage),
    T (test_chain_anonymous),
    T (test_chain_explicit_beats_env_and_file),
    T (test_chain_env_beats_file),
    T (test_chain_default_profile_from_credentials_file),
    T (test_chain_credentials_file_beats_config_file),
    T (test_chain_explicit_profile_skips_env),
    T (test_chain_aws_profile_selects_profile),
    T (test_chain_config_file_needs_profile_prefix),
    T (test_chain_files_from_environment_paths),
    T (test_chain_missing_named_profile),
    T (test_chain_env_half_set),
    T (test_chain_explicit_half_set),
    T (test_chain_profile_half_set),
    T (test_chain_nothing_found_lists_sources),
    T (test_chain_malformed_file),
    T (test_chain_unreadable_file),
    T (test_chain_value_too_long_hides_secret),
    T (test_chain_unsupported_profile_source),
    T (test_process_credentials),
    T (test_process_wrong_answers),
    T (test_chain_order_table),
    T (test_config_lookup),
    T (test_imds_credentials),
    T (test_imds_refresh_near_expiry),
    T (test_imds_concurrent_callers_refresh_once),
    T (test_imds_refresh_failure_keeps_valid_creds),
    T (test_imds_refresh_failure_after_expiry),
    T (test_imds_token_refused_gets_401),
    T (test_imds_expired_token_is_renewed),
    T (test_imds_no_role),
    T (test_imds_empty_access_key),
    T (test_imds_disabled_makes_no_request),
    T (test_imds_unreachable),
  };
  int r;

  curl_global_init (CURL_GLOBAL_DEFAULT);
  r = cmocka_run_group_tests (tests, NULL, NULL);
  curl_global_cleanup ();
  return r;
}
