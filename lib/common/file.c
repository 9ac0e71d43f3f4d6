/* s3bd: whole reads and writes of files.  See file.h. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"

int
file_write_all (int fd, const void *buf, size_t len)
{
  const unsigned char *p = buf;

  while (len > 0)
    {
      ssize_t r = write (fd, p, len);

      if (r == -1 && errno == EINTR)
        continue;
      if (r == -1)
        return -1;
      p += r;
      len -= (size_t)r;
    }
  return 0;
}

int
file_pread_all (int fd, void *buf, size_t len, uint64_t off)
{
  unsigned char *p = buf;

  while (len > 0)
    {
      ssize_t r = pread (fd, p, len, (off_t)off);

      if (r == -1 && errno == EINTR)
        continue;
      if (r == -1)
        return -1;
      if (r == 0)
        {
          errno = ENODATA;
          return -1;
        }
      p += r;
      len -= (size_t)r;
      off += (uint64_t)r;
    }
  return 0;
}

int
file_pwrite_all (int fd, const void *buf, size_t len, uint64_t off)
{
  struct iovec iov = { (void *)buf, len };

  return file_pwritev_all (fd, &iov, 1, off);
}

int
file_pwritev_all (int fd, const struct iovec *iov, int iovcnt, uint64_t off)
{
  /* Where the kernel stopped: buffer i, skip bytes of it done. */
  int i = 0;
  size_t skip = 0;

  while (i < iovcnt)
    {
      struct iovec v[64];
      int n = 0;
      ssize_t r;

      for (int k = i; k < iovcnt && n < (int)(sizeof v / sizeof v[0]); k++)
        {
          v[n].iov_base
              = (unsigned char *)iov[k].iov_base + (k == i ? skip : 0);
          v[n].iov_len = iov[k].iov_len - (k == i ? skip : 0);
          n++;
        }
      r = pwritev (fd, v, n, (off_t)off);
      if (r == -1 && errno == EINTR)
        continue;
      if (r == -1)
        return -1;
      if (r == 0)
        {
          errno = ENOSPC;
          return -1;
        }
      off += (uint64_t)r;
      /* Step over what was written. */
      while (i < iovcnt && (size_t)r >= iov[i].iov_len - skip)
        {
          r -= (ssize_t)(iov[i].iov_len - skip);
          skip = 0;
          i++;
        }
      skip += (size_t)r;
    }
  return 0;
}

/* Makes the rename durable: fsync the directory holding path. */
static int
sync_dir (const char *what, const char *path, struct s3bd_error *err)
{
  const char *slash = strrchr (path, '/');
  char *dir;
  int fd, r = 0;

  if (slash == NULL)
    dir = strdup (".");
  else if (slash == path)
    dir = strdup ("/");
  else
    dir = strndup (path, (size_t)(slash - path));
  if (dir == NULL)
    return s3bd_fail (err, S3BD_ENOMEM, "writing %s %s: out of memory", what,
                      path);
  fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd == -1 || fsync (fd) == -1)
    r = s3bd_fail (err, S3BD_EIO, "writing %s %s: syncing directory %s: %s",
                   what, path, dir, strerror (errno));
  if (fd >= 0)
    close (fd);
  free (dir);
  return r;
}

int
file_replace (const char *what, const char *path, const void *buf, size_t len,
              mode_t mode, struct s3bd_error *err)
{
  static const char suffix[] = ".tmp.XXXXXX";
  size_t plen = strlen (path);
  char *tmp;
  int fd, e;

  tmp = malloc (plen + sizeof suffix);
  if (tmp == NULL)
    return s3bd_fail (err, S3BD_ENOMEM, "writing %s %s: out of memory", what,
                      path);
  memcpy (tmp, path, plen);
  memcpy (tmp + plen, suffix, sizeof suffix);

  fd = mkstemp (tmp);
  if (fd == -1)
    {
      s3bd_fail (err, S3BD_EIO, "writing %s %s: creating %s: %s", what, path,
                 tmp, strerror (errno));
      free (tmp);
      return -1;
    }
  /* mkstemp makes it 0600. */
  if (fchmod (fd, mode) == -1 || file_write_all (fd, buf, len) == -1
      || fsync (fd) == -1)
    {
      e = errno;
      close (fd);
      goto fail;
    }
  if (close (fd) == -1)
    {
      e = errno;
      goto fail;
    }
  if (rename (tmp, path) == -1)
    {
      e = errno;
      goto fail;
    }
  free (tmp);
  /* The new file is in place; a failure here only leaves its durability
   * in doubt, and is still reported.
   */
  return sync_dir (what, path, err);

fail:
  s3bd_fail (err, S3BD_EIO, "writing %s %s: %s", what, path, strerror (e));
  unlink (tmp);
  free (tmp);
  return -1;
}
