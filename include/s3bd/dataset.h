/* s3bd: a dataset — the objects that become files of the image, and the
 * keys left out with their reasons.
 *
 * Sources: a listing of an S3 prefix, a SageMaker manifest file, or a
 * SageMaker augmented manifest (JSON Lines).  Key to path rules (see
 * docs/mkimage.md):
 *  - the part of the prefix up to and including its last '/' is removed
 *    from every key; the rest is the file's path ("data/tr" + key
 *    "data/train/a.jpg" -> "train/a.jpg"); the key equal to that part
 *    ("data/", the root marker) is the root itself and is ignored;
 *  - a path ending in '/' of size 0 is a directory marker: the directory
 *    exists even if empty; with data it is left out (DS_MARKER_WITH_DATA);
 *    the same holds for manifest entries;
 *  - a path with an empty segment ("a//b", leading '/'), a "." or ".."
 *    segment, a segment over 255 bytes, or invalid UTF-8 (overlong forms,
 *    surrogates, beyond U+10FFFF, or a NUL byte) is left out;
 *  - "lost+found" at the top is reserved for the file system's own;
 *  - a path that is both a file and a directory ("a" and "a/b", or a
 *    marker "a/"): the directory wins, the file is left out
 *    (DS_FILE_DIR_COLLISION); the directories are the markers and every
 *    parent of a file or marker;
 *  - the same path twice (manifests): the first wins;
 *  - a key over S3's limit of 1024 bytes (only a saved listing can hold
 *    one) is left out (DS_KEY_TOO_LONG).
 * Nothing is dropped silently: every left-out key is in `left`.  The same
 * input gives the same dataset, whatever the order of a listing.
 */
#ifndef S3BD_DATASET_H
#define S3BD_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "s3bd/error.h"
#include "s3bd/s3.h"

enum ds_reason
{
  DS_EMPTY_SEGMENT = 1, /* "a//b", a leading '/' */
  DS_DOT_SEGMENT,       /* "." or ".." */
  DS_NAME_TOO_LONG,     /* a segment over 255 bytes */
  DS_BAD_UTF8,
  DS_MARKER_WITH_DATA,   /* "a/" with size > 0 */
  DS_FILE_DIR_COLLISION, /* "a" is also a directory ("a/b" exists) */
  DS_DUPLICATE_PATH,     /* the same path came twice */
  DS_RESERVED_NAME,      /* "lost+found" at the top */
  DS_OTHER_SHARD,        /* kept by another --shard (not recorded) */
  DS_KEY_TOO_LONG,       /* over S3's 1024 bytes (a saved listing); the
                            index records its first 1024 bytes */
};

/* "empty path segment", ... */
const char *ds_reason_text (enum ds_reason r);

struct ds_file
{
  const char *path; /* relative, no leading '/' */
  const char *key;  /* the S3 key */
  const char *etag;
  uint32_t bucket; /* index into dataset.buckets */
  uint64_t size;
  int64_t mtime;
  uint32_t mtime_nsec;
};

struct ds_leftout
{
  const char *key;
  uint32_t bucket;
  enum ds_reason reason;
};

/* One Pipe record of an augmented manifest (see manifest_record): the
 * file whose bytes it sends, or an inline JSON text.
 */
struct ds_record
{
  const char *path; /* the file's path; NULL for an inline value */
  const char *text; /* inline: len bytes of JSON text */
  size_t len;
  bool first; /* the first record of its line */
};

struct dataset
{
  char **buckets; /* at least one */
  size_t nbuckets;
  char *prefix;          /* as given, for prefix sources; else "" */
  struct ds_file *files; /* sorted by path, byte order */
  size_t nfiles;
  const char **dirs; /* explicit directories (markers), sorted */
  size_t ndirs;
  struct ds_leftout *left; /* in input order */
  size_t nleft;
  struct ds_record *records; /* augmented manifests: line by line */
  size_t nrecords;
  struct s3_arena *arena; /* owns the strings */
};

void dataset_free (struct dataset *ds);

/* Builds a dataset from a listing of s3://bucket/prefix (objects sorted or
 * not).  The listing's strings are copied.  A key not under the prefix is
 * an error (S3BD_EINVAL): the listing is not of this prefix.
 */
int dataset_from_listing (struct dataset *ds, const char *bucket,
                          const char *prefix, const struct s3_listing *l,
                          struct s3bd_error *err);

/* One entry of a manifest: an object to find in S3, and the path it gets. */
struct manifest_entry
{
  char *bucket;
  char *key;
  char *path; /* relative path in the image */
};

/* One attribute of one augmented manifest line, as Pipe mode sends it:
 * a "-ref" attribute's object (entry v[entry]), or any other attribute's
 * value as its JSON text (json-c's plain form: no spaces, '/' not
 * escaped, numbers as written).
 */
struct manifest_record
{
  size_t entry;     /* index into v; SIZE_MAX for an inline value */
  const char *text; /* inline: the JSON text (in the arena), len bytes */
  size_t len;
  bool first; /* the first record of its line */
};

struct manifest
{
  struct manifest_entry *v;
  size_t n;
  struct manifest_record *rec; /* augmented manifests, in line order */
  size_t nrec;
  struct s3_arena *arena; /* owns the strings; entries of one bucket
                             share its name */
};

void manifest_free (struct manifest *m);

/* A SageMaker manifest: [{"prefix": "s3://bucket/p/"}, "rel/a", ...].
 * Each entry's key is prefix + entry; its path is the entry (checked by
 * dataset_from_manifest).  Not JSON, not such an array, or no entries:
 * S3BD_EINVAL naming the element or the position.
 */
int manifest_parse (const char *json, size_t len, struct manifest *out,
                    struct s3bd_error *err);

/* A SageMaker augmented manifest: JSON Lines, one object per line (blank
 * lines are skipped); the attributes named in attrs (when nattrs is 0:
 * every attribute whose name ends in "-ref", at least one per line) are
 * the line's records, in attrs order (else the line's order).  Those
 * whose name ends in "-ref" hold s3:// URIs whose objects become files,
 * in line order; the others are inline values (at most
 * INDEX_MAX_INLINE bytes of JSON text), sent only by Pipe mode.  A line
 * needs at least one record.  Paths: the key with the longest
 * common '/'-bounded prefix of the directory parts of all its bucket's
 * keys removed (so a path is never empty); with several buckets, each
 * path starts with "<bucket>/".  A URI that comes twice stays twice here;
 * dataset_from_manifest keeps the first (DS_DUPLICATE_PATH).  Errors name
 * the line (1-based) and the attribute.
 */
int augmented_manifest_parse (const char *text, size_t len,
                              const char *const *attrs, size_t nattrs,
                              struct manifest *out, struct s3bd_error *err);

/* Builds a dataset from manifest entries and the objects found for them
 * (found[i] describes m->v[i]: size, etag, mtime; found[i].key == NULL
 * when the object does not exist, which is an error naming it,
 * S3BD_ENOKEY).  buckets: the entries' buckets, in order of first
 * appearance; prefix "".
 */
int dataset_from_manifest (struct dataset *ds, const struct manifest *m,
                           const struct s3_object *found,
                           struct s3bd_error *err);

/* Keeps files i, i+n, i+2n... of the sorted list (SageMaker's
 * ShardedByS3Key); 0 <= i < n (n == 0 keeps all, i >= n none).
 * Directories (markers) stay in every shard; the files of other shards
 * are not added to `left`.
 */
void dataset_shard (struct dataset *ds, unsigned i, unsigned n);

/* Checks a relative path (no trailing '/') against the rules above; 0
 * when valid, else the first problem from the left.
 */
enum ds_reason ds_check_path (const char *path, size_t len);

#endif
