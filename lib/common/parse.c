/* s3bd: parsing the numbers of options.  See parse.h. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "s3bd/parse.h"

int
parse_unsigned (const char *s, int base, uint64_t max, uint64_t *out)
{
  unsigned long long v;
  char *end;

  /* strtoull skips blanks and takes a sign; we take neither. */
  if (!isdigit ((unsigned char)*s))
    return -1;
  errno = 0;
  v = strtoull (s, &end, base);
  if (errno || *end || v > max)
    return -1;
  *out = v;
  return 0;
}

int
parse_size (const char *s, uint64_t *out)
{
  unsigned long long v;
  unsigned shift = 0;
  char *end;

  if (!isdigit ((unsigned char)*s))
    return -1;
  errno = 0;
  v = strtoull (s, &end, 10);
  if (errno)
    return -1;
  switch (*end)
    {
    case '\0': break;
    case 'k':
    case 'K':
      shift = 10;
      end++;
      break;
    case 'm':
    case 'M':
      shift = 20;
      end++;
      break;
    case 'g':
    case 'G':
      shift = 30;
      end++;
      break;
    case 't':
    case 'T':
      shift = 40;
      end++;
      break;
    default: return -1;
    }
  if (*end != '\0' || (shift && v > (UINT64_MAX >> shift)))
    return -1;
  *out = (uint64_t)v << shift;
  return 0;
}

int
parse_bool (const char *s, bool *out)
{
  static const char *const yes[] = { "1", "true", "yes", "on" };
  static const char *const no[] = { "0", "false", "no", "off" };

  for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
    {
      if (strcasecmp (s, yes[i]) == 0)
        {
          *out = true;
          return 0;
        }
      if (strcasecmp (s, no[i]) == 0)
        {
          *out = false;
          return 0;
        }
    }
  return -1;
}

int
parse_count (const char *s, uint64_t min, uint64_t max, uint64_t *out,
             struct s3bd_error *err)
{
  uint64_t v;

  if (parse_unsigned (s, 10, max, &v) == -1 || v < min)
    return s3bd_fail (err, S3BD_EINVAL,
                      "expected a whole number from %llu to %llu, got '%s'",
                      (unsigned long long)min, (unsigned long long)max, s);
  *out = v;
  return 0;
}
