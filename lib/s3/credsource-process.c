/* s3bd: credential_process from a profile: the command runs through
 * /bin/sh -c, its stdout is JSON (Version 1, AccessKeyId, SecretAccessKey,
 * optional SessionToken and Expiration), parsed with json-c.  stderr is
 * left to the caller's stderr, as the AWS CLI does; stdout is never
 * quoted in a message.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "s3bd/creds.h"
#include "s3bd/error.h"

#include "credsint.h"

#define PROCESS_MAX_OUT 65536

int
process_parse_output (const char *out, const char *what, struct s3_creds *c,
                      struct s3bd_error *err)
{
  static const char *const secrets[] = { "SecretAccessKey", "SessionToken" };
  json_object *obj = json_tokener_parse (out), *ver;
  const char *ak, *sk, *tok, *exp;
  int64_t expiration = 0;
  int r = -1;

  if (obj == NULL || !json_object_is_type (obj, json_type_object))
    {
      s3bd_fail (err, S3BD_ECREDS, "%s: output is not a JSON object", what);
      goto out;
    }
  if (!json_object_object_get_ex (obj, "Version", &ver)
      || !json_object_is_type (ver, json_type_int)
      || json_object_get_int (ver) != 1)
    {
      s3bd_fail (err, S3BD_ECREDS, "%s: output has no \"Version\": 1", what);
      goto out;
    }
  ak = json_string (obj, "AccessKeyId");
  sk = json_string (obj, "SecretAccessKey");
  tok = json_string (obj, "SessionToken");
  exp = json_string (obj, "Expiration");
  if (!nonempty (ak) || !nonempty (sk))
    {
      s3bd_fail (err, S3BD_ECREDS, "%s: output without %s", what,
                 nonempty (ak) ? "SecretAccessKey" : "AccessKeyId");
      goto out;
    }
  if (exp && parse_iso8601 (exp, &expiration, NULL) < 0)
    {
      s3bd_fail (err, S3BD_ECREDS, "%s: malformed Expiration", what);
      goto out;
    }
  if (set_creds (c, ak, sk, tok, what, err) < 0)
    goto out;
  c->expiration = expiration;
  r = 0;

out:
  json_put_wiped (obj, secrets, 2);
  return r;
}

int
process_fetch (const char *command, const char *what, unsigned timeout_s,
               struct s3_creds *c, struct s3bd_error *err)
{
  int fds[2];
  pid_t pid;
  char *buf;
  size_t len = 0;
  int status = 0, r = -1;
  time_t deadline = time (NULL) + (time_t)timeout_s;
  bool timed_out = false, too_big = false;

  buf = malloc (PROCESS_MAX_OUT + 1);
  if (buf == NULL)
    return s3bd_fail (err, S3BD_ENOMEM, "%s: out of memory", what);
  if (pipe2 (fds, O_CLOEXEC) < 0)
    {
      free (buf);
      return s3bd_fail (err, S3BD_EIO, "%s: pipe: %s", what, strerror (errno));
    }
  pid = fork ();
  if (pid < 0)
    {
      close (fds[0]);
      close (fds[1]);
      free (buf);
      return s3bd_fail (err, S3BD_EIO, "%s: fork: %s", what, strerror (errno));
    }
  if (pid == 0)
    {
      dup2 (fds[1], STDOUT_FILENO);
      execl ("/bin/sh", "sh", "-c", command, (char *)NULL);
      _exit (127);
    }
  close (fds[1]);
  for (;;)
    {
      struct pollfd pfd = { .fd = fds[0], .events = POLLIN };
      time_t now = time (NULL);
      ssize_t n;
      int pr;

      if (now >= deadline)
        {
          timed_out = true;
          break;
        }
      pr = poll (&pfd, 1, (int)(deadline - now) * 1000);
      if (pr < 0 && errno == EINTR)
        continue;
      if (pr <= 0)
        {
          timed_out = pr == 0;
          break;
        }
      if (len >= PROCESS_MAX_OUT)
        {
          too_big = true;
          break;
        }
      n = read (fds[0], buf + len, PROCESS_MAX_OUT - len);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break;
      len += (size_t)n;
    }
  close (fds[0]);
  buf[len] = '\0';
  if (timed_out || too_big)
    kill (pid, SIGKILL);
  while (waitpid (pid, &status, 0) < 0 && errno == EINTR)
    ;
  if (timed_out)
    s3bd_fail (err, S3BD_ECREDS, "%s: the command did not finish in %u s", what,
               timeout_s);
  else if (too_big)
    s3bd_fail (err, S3BD_ECREDS, "%s: output larger than %d bytes", what,
               PROCESS_MAX_OUT);
  else if (WIFSIGNALED (status))
    s3bd_fail (err, S3BD_ECREDS, "%s: the command was killed by signal %d",
               what, WTERMSIG (status));
  else if (WEXITSTATUS (status) != 0)
    s3bd_fail (err, S3BD_ECREDS, "%s: the command exited with status %d", what,
               WEXITSTATUS (status));
  else
    r = process_parse_output (buf, what, c, err);
  explicit_bzero (buf, len);
  free (buf);
  return r;
}
