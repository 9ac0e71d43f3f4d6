/* s3bd: fuzzing what the instance-metadata service answers
 * (lib/s3/imds.c): the input as the token, as the role list and as the
 * role's credentials JSON (which also reaches parse_iso8601 and
 * set_creds in lib/s3/creds.c).  Bodies are cut at 16 KiB and end with a
 * NUL, as the fetch gives them.
 */
#include <stdbool.h>

#include "s3bd/creds.h"
#include "s3bd/error.h"

#include "s3/credsint.h"

#include "fuzz.h"

#define BODY_MAX 16384

/* What goes into an HTTP header: printable ASCII, no space. */
static bool
header_safe (const char *s)
{
  for (; *s; s++)
    if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f)
      return false;
  return true;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct s3bd_error err = { 0 };
  char token[1024], role[65];
  struct s3_creds c;
  char *body;

  if (size > BODY_MAX)
    size = BODY_MAX;

  body = fuzz_strdup (data, size);
  memset (token, 'x', sizeof token);
  if (imds_parse_token (body, token, sizeof token) == 0)
    {
      FUZZ_CHECK (strlen (token) >= 1 && strlen (token) < sizeof token);
      FUZZ_CHECK (header_safe (token));
    }
  free (body);

  body = fuzz_strdup (data, size);
  if (imds_parse_role (body, "u", role, sizeof role, &err) == 0)
    FUZZ_CHECK (strlen (role) >= 1 && strlen (role) <= 64
                && strchr (role, '/') == NULL);
  else
    FUZZ_CHECK_ERROR (&err);
  free (body);

  body = fuzz_strdup (data, size);
  s3bd_error_clear (&err);
  if (imds_parse_creds (body, "u", &c, &err) == 0)
    {
      FUZZ_CHECK (c.access_key[0] != '\0' && c.secret_key[0] != '\0');
      FUZZ_CHECK (memchr (c.session_token, '\0', sizeof c.session_token));
      FUZZ_CHECK (header_safe (c.access_key) && header_safe (c.secret_key)
                  && header_safe (c.session_token));
    }
  else
    FUZZ_CHECK_ERROR (&err);
  free (body);
  return 0;
}
