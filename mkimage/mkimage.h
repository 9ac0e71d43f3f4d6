/* s3bd-mkimage: what mkimage.c and inspect.c share. */
#ifndef S3BD_MKIMAGE_H
#define S3BD_MKIMAGE_H

#include <stddef.h>

/* Writes a sparse image: the index's metadata in place, zeros for data. */
int materialize (const char *index_path, const char *image_path);

/* Prints path, object URI, ETag, size and device blocks of the files
 * named (all files when npaths is 0).
 */
int dump (const char *index_path, const char *const *paths, size_t npaths);
/* --dump-records INDEX: the Pipe records of an augmented manifest, a line
 * each: manifest line (from 0, of the lines kept), record in the line,
 * "object" s3://bucket/key size, or "inline" and the JSON text.
 */
int dump_records (const char *index_path);

#endif
