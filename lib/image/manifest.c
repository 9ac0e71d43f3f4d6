/* s3bd: manifests — which objects a SageMaker manifest or augmented
 * manifest names, and the path each gets.  See include/s3bd/dataset.h;
 * dataset_from_manifest (lib/dataset.c) turns the entries into a
 * dataset.
 *
 * Manifests are parsed with json-c, after a strict UTF-8 check of the
 * text (JSON text is UTF-8, RFC 8259): json-c checks nothing by default,
 * and its JSON_TOKENER_VALIDATE_UTF8 lets overlong forms, surrogates and
 * code points past U+10FFFF through.  Its \u escapes always decode to
 * valid UTF-8 (a lone surrogate to U+FFFD), so valid text gives valid
 * strings.  The bucket names of an augmented manifest are interned
 * (ds_bucket_index, lib/dataset.c), so entries of one bucket share their
 * bucket string.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "common/arena.h"
#include "datasetint.h"
#include "s3bd/dataset.h"
#include "s3bd/index.h"

void
manifest_free (struct manifest *m)
{
  if (m == NULL)
    return;
  free (m->v);
  free (m->rec);
  s3_arena_free (m->arena);
  memset (m, 0, sizeof *m);
}

/* JSON's names for json-c's types. */
static const char *
json_kind (const struct json_object *o)
{
  switch (json_object_get_type (o))
    {
    case json_type_null: return "null";
    case json_type_boolean: return "a boolean";
    case json_type_double:
    case json_type_int: return "a number";
    case json_type_object: return "an object";
    case json_type_array: return "an array";
    case json_type_string: return "a string";
    }
  return "something else";
}

static bool
only_space (const char *s, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
      return false;
  return true;
}

/* Parses text[0..len) as one JSON value and nothing else but white space,
 * into *out (NULL for JSON's null: json-c has no object for it).  On
 * failure returns -1, with *what a description and *at the byte offset
 * where parsing stopped.  json-c takes an int length: longer text goes in
 * pieces.
 */
static int
parse_json (struct json_tokener *tok, const char *text, size_t len,
            struct json_object **out, const char **what, size_t *at)
{
  enum json_tokener_error jerr = json_tokener_continue;
  struct json_object *o = NULL;
  size_t off = 0, piece = 0, end;

  json_tokener_reset (tok);
  while (off < len)
    {
      piece = len - off < (size_t)1 << 30 ? len - off : (size_t)1 << 30;
      o = json_tokener_parse_ex (tok, text + off, (int)piece);
      jerr = json_tokener_get_error (tok);
      if (jerr != json_tokener_continue)
        break;
      off += piece;
    }
  if (jerr == json_tokener_continue)
    {
      /* The end of the text: the NUL ends a number, or tells json-c that
       * no more is coming.
       */
      o = json_tokener_parse_ex (tok, "", 1);
      jerr = json_tokener_get_error (tok);
      if (jerr != json_tokener_success)
        {
          *what = json_tokener_error_desc (jerr);
          *at = len;
          return -1;
        }
      *out = o;
      return 0;
    }
  end = off + json_tokener_get_parse_end (tok);
  if (jerr != json_tokener_success)
    {
      *what = json_tokener_error_desc (jerr);
      *at = end;
      return -1;
    }
  if (!only_space (text + end, len - end))
    {
      json_object_put (o);
      *what = "unexpected data after the JSON value";
      *at = end;
      return -1;
    }
  *out = o;
  return 0;
}

/* Line and column (1-based) of byte offset at. */
static void
line_col (const char *text, size_t at, size_t *line, size_t *col)
{
  size_t i, start = 0;

  *line = 1;
  for (i = 0; i < at; i++)
    if (text[i] == '\n')
      {
        (*line)++;
        start = i + 1;
      }
  *col = at - start + 1;
}

/* Appends an entry to out, growing it. */
static struct manifest_entry *
manifest_add (struct manifest *out, size_t *cap)
{
  struct manifest_entry *v
      = vector_grow (out->v, cap, out->n, 1, sizeof *out->v);

  if (v == NULL)
    return NULL;
  out->v = v;
  memset (&out->v[out->n], 0, sizeof *out->v);
  return &out->v[out->n++];
}

int
manifest_parse (const char *json, size_t len, struct manifest *out,
                struct s3bd_error *err)
{
  struct json_object *root = NULL, *first, *pfx, *e;
  struct json_tokener *tok;
  char *bucket = NULL, *prefix = NULL, *bname, *k;
  const char *what, *s;
  size_t at, line, col, i, n, cap = 0, plen, slen;
  struct manifest_entry *me;

  memset (out, 0, sizeof *out);
  tok = json_tokener_new ();
  if (tok == NULL)
    goto nomem;
  json_tokener_set_flags (tok, JSON_TOKENER_STRICT);
  at = ds_utf8_valid_prefix (json, len);
  if (at < len)
    {
      line_col (json, at, &line, &col);
      s3bd_fail (err, S3BD_EINVAL,
                 "manifest: invalid UTF-8 at line %zu, column %zu", line, col);
      goto fail;
    }
  if (parse_json (tok, json, len, &root, &what, &at) == -1)
    {
      line_col (json, at, &line, &col);
      s3bd_fail (err, S3BD_EINVAL,
                 "manifest: not JSON: %s at line %zu, column %zu", what, line,
                 col);
      goto fail;
    }
  if (!json_object_is_type (root, json_type_array))
    {
      s3bd_fail (err, S3BD_EINVAL, "manifest: expected a JSON array, found %s",
                 json_kind (root));
      goto fail;
    }
  n = json_object_array_length (root);
  if (n == 0)
    {
      s3bd_fail (err, S3BD_EINVAL,
                 "manifest: empty array (expected {\"prefix\": \"s3://...\"} "
                 "and entries)");
      goto fail;
    }
  first = json_object_array_get_idx (root, 0);
  if (!json_object_is_type (first, json_type_object)
      || !json_object_object_get_ex (first, "prefix", &pfx)
      || !json_object_is_type (pfx, json_type_string))
    {
      s3bd_fail (err, S3BD_EINVAL,
                 "manifest: element 0: expected {\"prefix\": \"s3://...\"}");
      goto fail;
    }
  if (s3_parse_uri (json_object_get_string (pfx), &bucket, &prefix, err) == -1)
    {
      s3bd_error_prefix (err, "manifest: prefix");
      goto fail;
    }
  if (n == 1)
    {
      s3bd_fail (err, S3BD_EINVAL, "manifest: no entries after the prefix");
      goto fail;
    }

  out->arena = s3_arena_new ();
  if (out->arena == NULL)
    goto nomem;
  bname = s3_arena_strndup (out->arena, bucket, strlen (bucket));
  if (bname == NULL)
    goto nomem;
  plen = strlen (prefix);
  for (i = 1; i < n; i++)
    {
      e = json_object_array_get_idx (root, i);
      if (!json_object_is_type (e, json_type_string))
        {
          s3bd_fail (err, S3BD_EINVAL,
                     "manifest: element %zu: expected a string, found %s", i,
                     json_kind (e));
          goto fail;
        }
      s = json_object_get_string (e);
      slen = (size_t)json_object_get_string_len (e);
      if (strlen (s) != slen)
        {
          s3bd_fail (err, S3BD_EINVAL,
                     "manifest: element %zu: contains a NUL character", i);
          goto fail;
        }
      if (slen > SIZE_MAX - 1 - plen)
        goto nomem;
      me = manifest_add (out, &cap);
      k = me ? s3_arena_alloc (out->arena, plen + slen + 1) : NULL;
      if (k == NULL)
        goto nomem;
      memcpy (k, prefix, plen);
      memcpy (k + plen, s, slen + 1);
      me->bucket = bname;
      me->key = k;
      me->path = k + plen;
    }
  json_object_put (root);
  json_tokener_free (tok);
  free (bucket);
  free (prefix);
  return 0;

nomem:
  s3bd_fail (err, S3BD_ENOMEM, "manifest: out of memory");
fail:
  json_object_put (root);
  if (tok)
    json_tokener_free (tok);
  free (bucket);
  free (prefix);
  manifest_free (out);
  return -1;
}

/* Length of the directory part of key: up to and including its last '/'
 * but one that ends it ("a/b/c" and "a/b/" -> "a/").
 */
static size_t
dir_part (const char *key, size_t len)
{
  const char *slash;

  if (len < 2)
    return 0;
  slash = memrchr (key, '/', len - 1);
  return slash ? (size_t)(slash - key) + 1 : 0;
}

/* What augmented_manifest_parse knows of one bucket. */
struct bucket_prefix
{
  const char *first; /* a key of the bucket */
  size_t common;     /* common '/'-bounded prefix of the dirs */
};

/* Narrows b->common to what key shares. */
static void
narrow_common (struct bucket_prefix *b, const char *key)
{
  size_t n = dir_part (key, strlen (key)), j;

  if (n > b->common)
    n = b->common;
  for (j = 0; j < n && key[j] == b->first[j]; j++)
    ;
  if (j == b->common)
    return;
  /* Back to the last '/' they share. */
  while (j > 0 && b->first[j - 1] != '/')
    j--;
  b->common = j;
}

static bool
ends_with_ref (const char *name)
{
  size_t n = strlen (name);

  return n >= 4 && memcmp (name + n - 4, "-ref", 4) == 0;
}

/* One s3:// URI of line lineno: into a new entry (bucket interned, key
 * in the arena, path later).
 */
/* Appends a record: entry's object, or (entry SIZE_MAX) text. */
static int
add_record (struct manifest *out, size_t *rcap, size_t entry, const char *text,
            size_t len)
{
  struct manifest_record *bigger;

  bigger = vector_grow (out->rec, rcap, out->nrec, 1, sizeof *out->rec);
  if (bigger == NULL)
    return -1;
  out->rec = bigger;
  out->rec[out->nrec++] = (struct manifest_record){ entry, text, len, false };
  return 0;
}

/* A named attribute not ending in "-ref": its value's JSON text. */
static int
add_inline (struct manifest *out, size_t *rcap, size_t lineno, const char *attr,
            struct json_object *val, struct s3bd_error *err)
{
  const char *json;
  char *copy;
  size_t len;

  json = json_object_to_json_string_length (
      val, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
  if (json == NULL)
    return s3bd_fail (err, S3BD_ENOMEM, "augmented manifest: out of memory");
  if (len > INDEX_MAX_INLINE)
    return s3bd_fail (err, S3BD_EINVAL,
                      "augmented manifest line %zu: attribute \"%s\": a value "
                      "of %zu bytes (an inline value is at most %u)",
                      lineno, attr, len, INDEX_MAX_INLINE);
  copy = s3_arena_strndup (out->arena, json, len);
  if (copy == NULL || add_record (out, rcap, SIZE_MAX, copy, len) == -1)
    return s3bd_fail (err, S3BD_ENOMEM, "augmented manifest: out of memory");
  return 0;
}

static int
add_uri (struct manifest *out, size_t *cap, size_t *rcap, struct buckets *bk,
         uint32_t **bidx, size_t *bidx_cap, size_t lineno, const char *attr,
         struct json_object *val, struct s3bd_error *err)
{
  char *bucket = NULL, *key = NULL;
  struct manifest_entry *me;
  const char *s;
  uint32_t bi, *bigger;
  int r = -1;

  if (!json_object_is_type (val, json_type_string))
    return s3bd_fail (err, S3BD_EINVAL,
                      "augmented manifest line %zu: attribute \"%s\": "
                      "expected an s3:// URI string, found %s",
                      lineno, attr, json_kind (val));
  s = json_object_get_string (val);
  if (strlen (s) != (size_t)json_object_get_string_len (val))
    return s3bd_fail (err, S3BD_EINVAL,
                      "augmented manifest line %zu: attribute \"%s\": "
                      "contains a NUL character",
                      lineno, attr);
  if (s3_parse_uri (s, &bucket, &key, err) == -1)
    {
      s3bd_error_prefix (err, "augmented manifest line %zu: attribute \"%s\"",
                         lineno, attr);
      return -1;
    }
  if (key[0] == '\0')
    {
      s3bd_fail (err, S3BD_EINVAL,
                 "augmented manifest line %zu: attribute \"%s\": %s: "
                 "names a bucket, not an object",
                 lineno, attr, s);
      goto out;
    }
  if ((bigger = vector_grow (*bidx, bidx_cap, out->n, 1, sizeof **bidx))
      == NULL)
    goto nomem;
  *bidx = bigger;
  if (ds_bucket_index (bk, out->arena, bucket, &bi) == -1
      || (me = manifest_add (out, cap)) == NULL)
    goto nomem;
  me->bucket = bk->names.ptr[bi];
  me->key = s3_arena_strndup (out->arena, key, strlen (key));
  if (me->key == NULL)
    goto nomem;
  (*bidx)[out->n - 1] = bi;
  if (add_record (out, rcap, out->n - 1, NULL, 0) == -1)
    goto nomem;
  r = 0;
  goto out;

nomem:
  s3bd_fail (err, S3BD_ENOMEM, "augmented manifest: out of memory");
out:
  free (bucket);
  free (key);
  return r;
}

/* The paths of all entries, once every key is known. */
static int
set_paths (struct manifest *out, const struct buckets *bk, const uint32_t *bidx)
{
  struct bucket_prefix *bp;
  size_t i, blen, rest;
  const char *key;
  char *p;

  bp = calloc (bk->names.len, sizeof *bp);
  if (bp == NULL)
    return -1;
  for (i = 0; i < out->n; i++)
    {
      struct bucket_prefix *b = &bp[bidx[i]];

      if (b->first == NULL)
        {
          b->first = out->v[i].key;
          b->common = dir_part (b->first, strlen (b->first));
        }
      else
        narrow_common (b, out->v[i].key);
    }
  for (i = 0; i < out->n; i++)
    {
      key = out->v[i].key + bp[bidx[i]].common;
      if (bk->names.len == 1)
        {
          out->v[i].path = (char *)key;
          continue;
        }
      /* "<bucket>/<rest>" */
      blen = strlen (out->v[i].bucket);
      rest = strlen (key);
      if (blen > SIZE_MAX - 2 || rest > SIZE_MAX - 2 - blen)
        goto nomem;
      p = s3_arena_alloc (out->arena, blen + 1 + rest + 1);
      if (p == NULL)
        goto nomem;
      memcpy (p, out->v[i].bucket, blen);
      p[blen] = '/';
      memcpy (p + blen + 1, key, rest + 1);
      out->v[i].path = p;
    }
  free (bp);
  return 0;

nomem:
  free (bp);
  return -1;
}

int
augmented_manifest_parse (const char *text, size_t len,
                          const char *const *attrs, size_t nattrs,
                          struct manifest *out, struct s3bd_error *err)
{
  struct json_tokener *tok;
  struct json_object *o = NULL, *val;
  size_t pos, linelen, lineno = 0, at, cap = 0, bidx_cap = 0, rcap = 0, a,
                       found, line_first;
  const char *line, *eol, *what;
  struct buckets bk;
  uint32_t *bidx = NULL;

  memset (out, 0, sizeof *out);
  memset (&bk, 0, sizeof bk);
  tok = json_tokener_new ();
  out->arena = s3_arena_new ();
  if (tok == NULL || out->arena == NULL)
    goto nomem;
  json_tokener_set_flags (tok, JSON_TOKENER_STRICT);

  for (pos = 0; pos < len; pos += linelen + (eol != NULL))
    {
      line = text + pos;
      eol = memchr (line, '\n', len - pos);
      linelen = eol ? (size_t)(eol - line) : len - pos;
      lineno++;
      if (only_space (line, linelen))
        continue;
      at = ds_utf8_valid_prefix (line, linelen);
      if (at < linelen)
        {
          s3bd_fail (err, S3BD_EINVAL,
                     "augmented manifest line %zu: invalid UTF-8 at column %zu",
                     lineno, at + 1);
          goto fail;
        }
      if (parse_json (tok, line, linelen, &o, &what, &at) == -1)
        {
          s3bd_fail (err, S3BD_EINVAL,
                     "augmented manifest line %zu: not JSON: %s at column %zu",
                     lineno, what, at + 1);
          goto fail;
        }
      if (!json_object_is_type (o, json_type_object))
        {
          s3bd_fail (err, S3BD_EINVAL,
                     "augmented manifest line %zu: expected a JSON object, "
                     "found %s",
                     lineno, json_kind (o));
          goto fail;
        }
      line_first = out->nrec;
      if (nattrs > 0)
        for (a = 0; a < nattrs; a++)
          {
            if (!json_object_object_get_ex (o, attrs[a], &val))
              {
                s3bd_fail (err, S3BD_EINVAL,
                           "augmented manifest line %zu: no attribute \"%s\"",
                           lineno, attrs[a]);
                goto fail;
              }
            if (ends_with_ref (attrs[a])
                    ? add_uri (out, &cap, &rcap, &bk, &bidx, &bidx_cap, lineno,
                               attrs[a], val, err)
                    : add_inline (out, &rcap, lineno, attrs[a], val, err))
              goto fail;
          }
      else
        {
          found = 0;
          json_object_object_foreach (o, name, v)
          {
            if (!ends_with_ref (name))
              continue;
            found++;
            if (add_uri (out, &cap, &rcap, &bk, &bidx, &bidx_cap, lineno, name,
                         v, err)
                == -1)
              goto fail;
          }
          if (found == 0)
            {
              s3bd_fail (err, S3BD_EINVAL,
                         "augmented manifest line %zu: no attribute whose "
                         "name ends in \"-ref\"",
                         lineno);
              goto fail;
            }
        }
      if (out->nrec > line_first)
        out->rec[line_first].first = true;
      json_object_put (o);
      o = NULL;
    }
  if (out->n == 0)
    {
      s3bd_fail (err, S3BD_EINVAL,
                 out->nrec ? "augmented manifest: no \"-ref\" attribute, so no "
                             "files (name one in the attribute names)"
                           : "augmented manifest: no entries");
      goto fail;
    }
  if (set_paths (out, &bk, bidx) == -1)
    goto nomem;
  json_tokener_free (tok);
  ds_buckets_free (&bk);
  free (bidx);
  return 0;

nomem:
  s3bd_fail (err, S3BD_ENOMEM, "augmented manifest: out of memory");
fail:
  json_object_put (o);
  if (tok)
    json_tokener_free (tok);
  ds_buckets_free (&bk);
  free (bidx);
  manifest_free (out);
  return -1;
}
