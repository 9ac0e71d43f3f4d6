/* s3bd: fuzzing manifests (lib/image/manifest.c): the input as a SageMaker
 * manifest and as an augmented manifest (every "-ref" attribute, and two
 * named ones), and what parses on through dataset_from_manifest
 * (lib/image/dataset.c) as if S3 had every object.  Entries must be
 * NUL-free strings; the dataset must account for every entry (a file, a
 * directory or a key left out) and keep only paths that pass its rules,
 * sorted.
 */
#include "s3bd/dataset.h"
#include "s3bd/error.h"
#include "s3bd/s3.h"

#include "fuzz.h"

static void
check_dataset (const struct manifest *m)
{
  struct s3_object *found = calloc (m->n, sizeof *found);
  struct s3bd_error err = { 0 };
  struct dataset ds;

  if (found == NULL)
    abort ();
  for (size_t i = 0; i < m->n; i++)
    found[i] = (struct s3_object){ m->v[i].key, "\"etag\"", i % 3, 0, 0 };
  if (dataset_from_manifest (&ds, m, found, &err) == 0)
    {
      FUZZ_CHECK (ds.nfiles + ds.ndirs + ds.nleft == m->n);
      for (size_t i = 0; i < ds.nfiles; i++)
        {
          const char *p = ds.files[i].path;

          FUZZ_CHECK (ds_check_path (p, strlen (p)) == 0);
          FUZZ_CHECK (i == 0 || strcmp (ds.files[i - 1].path, p) < 0);
          FUZZ_CHECK (ds.files[i].bucket < ds.nbuckets);
        }
      for (size_t i = 0; i < ds.nleft; i++)
        FUZZ_CHECK (ds.left[i].reason != 0 && ds.left[i].bucket < ds.nbuckets);
      dataset_free (&ds);
    }
  else
    FUZZ_CHECK_ERROR (&err);
  free (found);
}

static void
check_manifest (int r, const struct manifest *m, const struct s3bd_error *err)
{
  if (r != 0)
    {
      FUZZ_CHECK_ERROR (err);
      FUZZ_CHECK (m->n == 0 && m->v == NULL);
      return;
    }
  FUZZ_CHECK (m->n > 0);
  for (size_t i = 0; i < m->n; i++)
    {
      FUZZ_CHECK (m->v[i].bucket && m->v[i].key && m->v[i].path);
      FUZZ_CHECK (m->v[i].bucket[0] != '\0');
    }
  check_dataset (m);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static const char *const attrs[] = { "source-ref", "label-ref" };
  const char *text = (const char *)data;
  struct s3bd_error err = { 0 };
  struct manifest m;
  int r;

  r = manifest_parse (text, size, &m, &err);
  check_manifest (r, &m, &err);
  manifest_free (&m);

  s3bd_error_clear (&err);
  r = augmented_manifest_parse (text, size, NULL, 0, &m, &err);
  check_manifest (r, &m, &err);
  manifest_free (&m);

  s3bd_error_clear (&err);
  r = augmented_manifest_parse (text, size, attrs, 2, &m, &err);
  check_manifest (r, &m, &err);
  manifest_free (&m);
  return 0;
}
