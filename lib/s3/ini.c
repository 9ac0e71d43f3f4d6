/* s3bd: the AWS shared files (credentials and config): their parser and
 * the look-ups of a profile's keys and settings.  See
 * include/s3bd/creds.h; the chain that uses them is in creds.c.
 *
 * The shared files are parsed here rather than with an INI library: the
 * AWS dialect (indented sub-sections, '#' and '=' inside values, no inline
 * comments) is what botocore's configparser accepts, which generic INI
 * parsers get wrong, and it is small.
 *
 * Secrets never reach an error message: the parser reports line numbers,
 * not lines, and values are named, never quoted.  Buffers that held
 * secrets are wiped before they are freed.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "s3bd/creds.h"
#include "s3bd/error.h"

#include "credsint.h"

#define MAX_SHARED_FILE (4 * 1024 * 1024)

static void
free_secret (char *s)
{
  if (s)
    {
      explicit_bzero (s, strlen (s));
      free (s);
    }
}

/* ---- The shared files' parser ---- */

int
ini_parse (const char *text, size_t len, const char *filename, ini_fn fn,
           void *arg, struct s3bd_error *err)
{
  const char *name = filename ? filename : "(text)";
  const char *section = NULL;
  const char *parent = NULL; /* a key with an empty value */
  bool parent_used = false;  /* ... that has had sub-keys */
  const char *nul;
  char *buf, *line, *next, *end;
  int lineno = 0;
  int r = 0;

  /* Line numbers are ints; real files are far smaller. */
  if (len > INT_MAX)
    return s3bd_fail (err, S3BD_EINVAL, "%s: too large", name);
  nul = memchr (text, '\0', len);
  if (nul)
    {
      const char *q;

      lineno = 1;
      for (q = text; q < nul; q++)
        lineno += *q == '\n';
      return s3bd_fail (err, S3BD_EINVAL, "%s line %d: NUL byte", name, lineno);
    }

  buf = malloc (len + 1);
  if (buf == NULL)
    return s3bd_fail (err, S3BD_ENOMEM, "%s: out of memory", name);
  memcpy (buf, text, len);
  buf[len] = '\0';

  line = buf;
  if (len >= 3 && memcmp (buf, "\xef\xbb\xbf", 3) == 0)
    line += 3; /* a UTF-8 byte order mark */

  for (; line < buf + len; line = next)
    {
      char *p, *eq, *key, *value;
      bool indented;

      end = memchr (line, '\n', (size_t)(buf + len - line));
      if (end)
        next = end + 1;
      else
        next = end = buf + len;
      *end = '\0';
      lineno++;

      indented = *line == ' ' || *line == '\t';
      p = trim (line);
      if (*p == '\0' || *p == '#' || *p == ';')
        continue; /* comments do not end a sub-section */

      /* Anything but an indented key ends a sub-section; one without
       * sub-keys was a plain key with an empty value.
       */
      if (parent && !(indented && *p != '['))
        {
          if (!parent_used)
            r = fn (arg, section, parent, "");
          parent = NULL;
          if (r != 0)
            break;
        }

      if (*p == '[')
        {
          char *close = strchr (p, ']');
          char *rest;

          if (close == NULL)
            {
              r = s3bd_fail (err, S3BD_EINVAL, "%s line %d: unterminated '['",
                             name, lineno);
              break;
            }
          rest = close + 1;
          while (isspace ((unsigned char)*rest))
            rest++;
          if (*rest != '\0' && *rest != '#' && *rest != ';')
            {
              r = s3bd_fail (err, S3BD_EINVAL,
                             "%s line %d: unexpected text after ']'", name,
                             lineno);
              break;
            }
          *close = '\0';
          section = trim (p + 1);
          if (*section == '\0')
            {
              r = s3bd_fail (err, S3BD_EINVAL, "%s line %d: empty section name",
                             name, lineno);
              break;
            }
          continue;
        }

      eq = strchr (p, '=');
      if (eq == NULL || eq == p)
        {
          r = s3bd_fail (err, S3BD_EINVAL, "%s line %d: expected 'key = value'",
                         name, lineno);
          break;
        }
      *eq = '\0';
      key = trim (p);
      value = trim (eq + 1);
      if (section == NULL)
        {
          r = s3bd_fail (err, S3BD_EINVAL,
                         "%s line %d: key before any [section]", name, lineno);
          break;
        }

      if (parent)
        {
          /* Both come from buf, so the sum cannot overflow. */
          size_t n = strlen (parent) + 1 + strlen (key) + 1;
          char *joined = malloc (n);

          if (joined == NULL)
            {
              r = s3bd_fail (err, S3BD_ENOMEM, "%s: out of memory", name);
              break;
            }
          snprintf (joined, n, "%s.%s", parent, key);
          parent_used = true;
          r = fn (arg, section, joined, value);
          free (joined);
        }
      else if (*value == '\0')
        {
          parent = key; /* perhaps a sub-section: see next line */
          parent_used = false;
        }
      else
        r = fn (arg, section, key, value);
      if (r != 0)
        break;
    }

  if (r == 0 && parent && !parent_used)
    r = fn (arg, section, parent, "");

  explicit_bzero (buf, len);
  free (buf);
  return r;
}

/* ---- Shared files ---- */

/* Reads a whole file.  Returns 1 with a NUL-terminated *bufp (wipe before
 * freeing: it may hold secrets), 0 when the file does not exist, -1 on
 * error.  Not limited to regular files: /dev/null is a common way to say
 * "no file".
 */
static int
read_shared_file (const char *path, char **bufp, size_t *lenp,
                  struct s3bd_error *err)
{
  size_t len = 0, cap = 4096;
  char *buf;
  int fd;

  *bufp = NULL;
  *lenp = 0;
  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    {
      if (errno == ENOENT || errno == ENOTDIR)
        return 0;
      return s3bd_fail (err, S3BD_EIO, "%s: %s", path, strerror (errno));
    }
  buf = malloc (cap + 1);
  if (buf == NULL)
    goto nomem;
  for (;;)
    {
      ssize_t n;

      if (len == cap)
        {
          char *bigger;

          if (cap >= MAX_SHARED_FILE)
            {
              s3bd_fail (err, S3BD_EINVAL, "%s: larger than %d bytes", path,
                         MAX_SHARED_FILE);
              goto fail;
            }
          /* Grow by copying, so that no stale copy of a secret is left
           * behind by realloc.
           */
          bigger = malloc (cap * 2 + 1);
          if (bigger == NULL)
            goto nomem;
          memcpy (bigger, buf, len);
          explicit_bzero (buf, len);
          free (buf);
          buf = bigger;
          cap *= 2;
        }
      n = read (fd, buf + len, cap - len);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          s3bd_fail (err, S3BD_EIO, "%s: %s", path, strerror (errno));
          goto fail;
        }
      if (n == 0)
        break;
      len += (size_t)n;
    }
  close (fd);
  buf[len] = '\0';
  *bufp = buf;
  *lenp = len;
  return 1;

nomem:
  s3bd_fail (err, S3BD_ENOMEM, "%s: out of memory", path);
fail:
  if (buf)
    {
      explicit_bzero (buf, len);
      free (buf);
    }
  close (fd);
  return -1;
}

int
shared_file_path (const char *envname, const char *leaf, char *path,
                  size_t size, struct s3bd_error *err)
{
  const char *v = getenv_set (envname);
  const char *home = getenv_set ("HOME");
  int n;

  path[0] = '\0';
  if (v && strncmp (v, "~/", 2) == 0 && home)
    n = snprintf (path, size, "%s/%s", home, v + 2);
  else if (v)
    n = snprintf (path, size, "%s", v);
  else if (home)
    n = snprintf (path, size, "%s/.aws/%s", home, leaf);
  else
    return 0;
  if (n < 0 || (size_t)n >= size)
    {
      path[0] = '\0';
      return s3bd_fail (err, S3BD_EINVAL, "%s: path too long", envname);
    }
  return 0;
}

/* Credentials files name the profile ("[dev]"); config files prefix it
 * ("[profile dev]"), except for the default profile, which may be either.
 */
static bool
section_is_profile (const char *section, const char *profile, bool config_file)
{
  const char *p;

  if (!config_file || strcmp (section, "default") == 0)
    return strcmp (section, profile) == 0;
  if (strncmp (section, "profile", 7) != 0
      || !isspace ((unsigned char)section[7]))
    return false;
  for (p = section + 7; isspace ((unsigned char)*p); p++)
    ;
  return strcmp (p, profile) == 0;
}

/* Profile keys that name a credential source s3bd does not implement. */
static const char *const unsupported_keys[] = {
  "sso_session",
  "sso_start_url",
  "credential_source",
};

static int
profile_scan_cb (void *arg, const char *section, const char *key,
                 const char *value)
{
  struct profile_scan *ps = arg;
  char **slot;
  size_t i;

  if (!section_is_profile (section, ps->profile, ps->config_file))
    return 0;
  ps->found = true;
  /* configparser lower-cases keys, so the AWS tools accept any case. */
  if (strcasecmp (key, "aws_access_key_id") == 0)
    slot = &ps->access_key;
  else if (strcasecmp (key, "aws_secret_access_key") == 0)
    slot = &ps->secret_key;
  else if (strcasecmp (key, "aws_session_token") == 0)
    slot = &ps->session_token;
  else if (strcasecmp (key, "credential_process") == 0)
    slot = &ps->credential_process;
  else if (strcasecmp (key, "role_arn") == 0)
    slot = &ps->role_arn;
  else if (strcasecmp (key, "web_identity_token_file") == 0)
    slot = &ps->web_identity_token_file;
  else if (strcasecmp (key, "role_session_name") == 0)
    slot = &ps->role_session_name;
  else if (strcasecmp (key, "source_profile") == 0)
    slot = &ps->source_profile;
  else
    {
      for (i = 0; i < sizeof unsupported_keys / sizeof *unsupported_keys; i++)
        if (strcasecmp (key, unsupported_keys[i]) == 0 && !ps->unsupported)
          ps->unsupported = unsupported_keys[i];
      return 0;
    }
  free_secret (*slot);
  *slot = *value ? strdup (value) : NULL;
  if (*value && *slot == NULL)
    {
      ps->nomem = true;
      return -1;
    }
  return 0;
}

void
profile_scan_free (struct profile_scan *ps)
{
  free_secret (ps->access_key);
  free_secret (ps->secret_key);
  free_secret (ps->session_token);
  free_secret (ps->credential_process);
  free_secret (ps->role_arn);
  free_secret (ps->web_identity_token_file);
  free_secret (ps->role_session_name);
  free_secret (ps->source_profile);
  ps->source_profile = NULL;
  ps->access_key = ps->secret_key = ps->session_token = NULL;
  ps->credential_process = ps->role_arn = NULL;
  ps->web_identity_token_file = ps->role_session_name = NULL;
}

int
profile_scan_text (const char *text, size_t len, const char *filename,
                   struct profile_scan *ps, struct s3bd_error *err)
{
  int r = ini_parse (text, len, filename, profile_scan_cb, ps, err);

  if (r != 0 && ps->nomem)
    return s3bd_fail (err, S3BD_ENOMEM, "%s: out of memory", filename);
  return r != 0 ? -1 : 0;
}

int
profile_scan_file (const char *path, struct profile_scan *ps,
                   struct s3bd_error *err)
{
  char *buf;
  size_t len;
  int r;

  if (path[0] == '\0')
    return 0;
  r = read_shared_file (path, &buf, &len, err);
  if (r <= 0)
    return r;
  r = profile_scan_text (buf, len, path, ps, err);
  explicit_bzero (buf, len);
  free (buf);
  return r;
}

struct config_lookup
{
  const char *profile;
  const char *name;
  char *value;
  bool nomem;
};

static int
config_lookup_cb (void *arg, const char *section, const char *key,
                  const char *value)
{
  struct config_lookup *cl = arg;

  if (!section_is_profile (section, cl->profile, true)
      || strcasecmp (key, cl->name) != 0)
    return 0;
  free_secret (cl->value); /* the last one wins */
  cl->value = strdup (value);
  if (cl->value == NULL)
    {
      cl->nomem = true;
      return -1;
    }
  return 0;
}

char *
config_lookup_text (const char *text, size_t len, const char *filename,
                    const char *profile, const char *name,
                    struct s3bd_error *err)
{
  struct config_lookup cl = { .profile = profile, .name = name };

  if (ini_parse (text, len, filename, config_lookup_cb, &cl, err) != 0)
    {
      if (cl.nomem)
        s3bd_fail (err, S3BD_ENOMEM, "%s: out of memory", filename);
      free_secret (cl.value);
      return NULL;
    }
  return cl.value;
}

char *
aws_config_lookup (const char *profile, const char *name,
                   struct s3bd_error *err)
{
  char path[PATH_MAX];
  char *buf, *value;
  size_t len;
  int r;

  s3bd_error_clear (err);
  if (!nonempty (profile))
    profile = getenv_set ("AWS_PROFILE");
  if (profile == NULL)
    profile = "default";
  r = shared_file_path ("AWS_CONFIG_FILE", "config", path, sizeof path, err);
  if (r < 0 || path[0] == '\0')
    return NULL;
  r = read_shared_file (path, &buf, &len, err);
  if (r <= 0)
    return NULL;
  value = config_lookup_text (buf, len, path, profile, name, err);
  explicit_bzero (buf, len);
  free (buf);
  return value;
}
