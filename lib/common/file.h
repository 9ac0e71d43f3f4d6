/* s3bd: whole reads and writes of files, private to lib/.
 *
 * The kernel may transfer less than asked, or be interrupted: these loop
 * until everything is transferred or a real error comes.
 */
#ifndef S3BD_FILE_H
#define S3BD_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "s3bd/error.h"

/* 0, or -1 with errno set. */
int file_write_all (int fd, const void *buf, size_t len);
/* 0, or -1 with errno set: ENODATA when the file ends first, so that a
 * caller can say "truncated".
 */
int file_pread_all (int fd, void *buf, size_t len, uint64_t off);
int file_pwrite_all (int fd, const void *buf, size_t len, uint64_t off);
/* Writes iov[0..iovcnt) at off, any number of buffers (IOV_MAX at a
 * time).  Does not change iov.
 */
int file_pwritev_all (int fd, const struct iovec *iov, int iovcnt,
                      uint64_t off);

/* Replaces path atomically with buf: a temporary file beside it
 * (path.tmp.XXXXXX), fsync, rename, fsync of the directory, so that
 * after a crash path holds the old bytes or the new, never a mix.  mode
 * is the new file's.  On failure nothing is left behind and err says
 * "writing WHAT PATH: ...".
 */
int file_replace (const char *what, const char *path, const void *buf,
                  size_t len, mode_t mode, struct s3bd_error *err);

#endif
