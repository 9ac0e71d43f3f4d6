/* s3bd: fuzzing the AWS shared files (lib/s3/ini.c): the input as a
 * credentials file and as a config file, scanned for the default profile
 * and for "dev" as the credential chain does, and the config look-ups
 * the client makes.  Every key and value handed out must be a trimmed,
 * NUL-free string within the text; an error names a line that exists.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>

#include "s3bd/creds.h"
#include "s3bd/error.h"

#include "s3/credsint.h"

#include "fuzz.h"

struct seen
{
  size_t len; /* of the text */
  size_t pairs;
};

static bool
trimmed (const char *s)
{
  size_t n = strlen (s);

  return n == 0
         || (!isspace ((unsigned char)s[0])
             && !isspace ((unsigned char)s[n - 1]));
}

static int
check_pair (void *arg, const char *section, const char *key, const char *value)
{
  struct seen *s = arg;

  FUZZ_CHECK (section && key && value);
  FUZZ_CHECK (section[0] != '\0' && key[0] != '\0');
  FUZZ_CHECK (trimmed (section) && trimmed (key) && trimmed (value));
  /* A sub-section key is "parent.key": at most the text plus the dot. */
  FUZZ_CHECK (strlen (section) <= s->len && strlen (key) <= s->len + 1
              && strlen (value) <= s->len);
  s->pairs++;
  return 0;
}

/* An error's "line N" is a line of the text. */
static void
check_line (const struct s3bd_error *err, const uint8_t *data, size_t size)
{
  const char *p = strstr (err->msg, " line ");
  size_t lines = 1;

  FUZZ_CHECK_ERROR (err);
  if (p == NULL)
    return;
  for (size_t i = 0; i < size; i++)
    lines += data[i] == '\n';
  FUZZ_CHECK (strtoul (p + 6, NULL, 10) >= 1
              && strtoul (p + 6, NULL, 10) <= lines);
}

static void
scan (const char *text, size_t size, const char *profile, bool config_file)
{
  struct profile_scan ps = { .profile = profile, .config_file = config_file };
  struct s3bd_error err = { 0 };
  struct s3_creds c;

  if (profile_scan_text (text, size, "f", &ps, &err) == 0)
    {
      if (ps.access_key && ps.secret_key
          && set_creds (&c, ps.access_key, ps.secret_key, ps.session_token, "f",
                        &err)
                 == -1)
        FUZZ_CHECK_ERROR (&err);
    }
  else
    check_line (&err, (const uint8_t *)text, size);
  FUZZ_CHECK (!ps.access_key || ps.access_key[0] != '\0');
  profile_scan_free (&ps);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static const char *const names[]
      = { "region", "endpoint_url", "s3.addressing_style" };
  const char *text = (const char *)data;
  struct seen seen = { size, 0 };
  struct s3bd_error err = { 0 };
  char *v;

  if (ini_parse (text, size, "f", check_pair, &seen, &err) != 0)
    check_line (&err, data, size);
  scan (text, size, "default", false);
  scan (text, size, "default", true);
  scan (text, size, "dev", false);
  scan (text, size, "dev", true);
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    {
      s3bd_error_clear (&err);
      v = config_lookup_text (text, size, "f", "dev", names[i], &err);
      if (v)
        {
          FUZZ_CHECK (err.code == S3BD_OK && trimmed (v));
          free (v);
        }
    }
  return 0;
}
