/* s3bd: fuzzing S3's XML responses (lib/s3/s3xml.c): a ListObjectsV2
 * page, an error document and the %-decoding of keys, all three on every
 * input.  A page that parses must keep S3's rules (keys of 1 to 1024
 * bytes, a token when truncated); one that does not must leave the
 * listing as it was.
 */
#include <stdbool.h>

#include "s3bd/error.h"
#include "s3bd/s3.h"
#include "s3bd/s3xml.h"

#include "fuzz.h"

static void
fuzz_list (const char *xml, size_t size)
{
  struct s3_listing l = { 0 };
  struct s3xml_list_page page;
  struct s3bd_error err = { 0 };

  /* A page appends to a listing: start with one object in it. */
  if (s3_listing_add (&l, "before", 6, "\"e\"", 1, 0, 0) == -1)
    abort ();
  if (s3xml_parse_list (xml, size, &l, &page, &err) == 0)
    {
      FUZZ_CHECK (page.nkeys == l.n - 1);
      FUZZ_CHECK (page.truncated == (page.next_token != NULL));
      FUZZ_CHECK (!page.truncated || page.next_token[0] != '\0');
      for (size_t i = 1; i < l.n; i++)
        {
          size_t n = strlen (l.objs[i].key);

          FUZZ_CHECK (n >= 1 && n <= 1024);
          FUZZ_CHECK (strlen (l.objs[i].etag) < 80);
        }
      for (size_t i = 0; i < page.nprefixes; i++)
        FUZZ_CHECK (strlen (page.prefixes[i]) <= 1024);
    }
  else
    {
      FUZZ_CHECK_ERROR (&err);
      FUZZ_CHECK (l.n == 1 && strcmp (l.objs[0].key, "before") == 0);
      FUZZ_CHECK (page.next_token == NULL && page.nprefixes == 0);
    }
  s3xml_list_page_free (&page);
  s3_listing_free (&l);
}

static void
fuzz_error (const char *xml, size_t size)
{
  char code[64], message[256];

  memset (code, 'x', sizeof code);
  memset (message, 'x', sizeof message);
  if (s3xml_parse_error (xml, size, code, sizeof code, message, sizeof message)
      == 0)
    {
      FUZZ_CHECK (memchr (code, '\0', sizeof code) != NULL);
      FUZZ_CHECK (memchr (message, '\0', sizeof message) != NULL);
    }
}

static void
fuzz_url_decode (const uint8_t *data, size_t size)
{
  char *s = fuzz_strdup (data, size);
  size_t n = size;

  if (s3xml_url_decode (s, &n, size % 2 == 1) == 0)
    {
      FUZZ_CHECK (n <= size);
      FUZZ_CHECK (n == size || s[n] == '\0');
    }
  else
    {
      FUZZ_CHECK (n == size);
      FUZZ_CHECK (memcmp (s, data, size) == 0);
    }
  free (s);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  fuzz_list ((const char *)data, size);
  fuzz_error ((const char *)data, size);
  fuzz_url_decode (data, size);
  return 0;
}
