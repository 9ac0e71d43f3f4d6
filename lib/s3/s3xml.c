/* s3bd: S3's XML responses, parsed with expat.
 *
 * Two documents matter: a ListObjectsV2 page (ListBucketResult) and an
 * error document (Error).  Both are read by a SAX parser with a small
 * state machine: a stack of the open elements, and one text buffer for
 * the leaf element being read.  Elements are matched by local name, so
 * the page may or may not carry S3's namespace; unknown elements are
 * skipped whole.
 *
 * The listing is what the device image is built from, so this parser is
 * strict: a truncated or malformed page, a Contents without Key or Size,
 * a Size that is not a number, a key over S3's 1024-byte limit, a page
 * that says it is truncated but gives no continuation token: each is an
 * error naming what was wrong and where, never a short listing.
 *
 * Order does not matter in the page: EncodingType may come before or
 * after the Contents it applies to (the documentation lists it after, AWS
 * sends it before), so keys and prefixes are stored as sent and decoded
 * once the whole page has been read.
 *
 * A DOCTYPE is refused: S3 never sends one, and with no DTD there are no
 * entity declarations, so no entity expansion attack and no external
 * entity can get in.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <expat.h>

#include "s3bd/creds.h"
#include "s3bd/s3xml.h"

/* S3's limit on a key, in bytes of UTF-8. */
#define KEY_MAX 1024
/* A key as sent: at most every byte url-encoded as %XX. */
#define KEY_TEXT_MAX (3 * KEY_MAX)
/* Continuation tokens are opaque; servers that put the last key into them
 * (Swift, MinIO) need more than a key's length.
 */
#define TOKEN_MAX 8192
/* The ETag is kept in 80-byte buffers elsewhere (s3_object_info). */
#define ETAG_MAX 79
/* Numbers, booleans, dates and the encoding type. */
#define SHORT_TEXT_MAX 256
/* The page nests four deep (Contents/Owner/ID); allow some slack. */
#define DEPTH_MAX 16
/* Text of an error document's Code and Message is cut here. */
#define ERROR_TEXT_MAX 1024

/* expat joins a namespace URI and a local name with this; it is not a
 * name character, so the local name is what follows its last occurrence.
 */
#define NS_SEP '|'

/* expat takes lengths as int: feed large documents in pieces. */
#define FEED_MAX ((size_t)1 << 20)

static const char *
local_name (const XML_Char *name)
{
  const char *p = strrchr (name, NS_SEP);

  return p ? p + 1 : name;
}

static bool
is_xml_space (char c)
{
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Trims XML white space from both ends of s[0..*len), in place. */
static char *
trim (char *s, size_t *len)
{
  while (*len > 0 && is_xml_space (s[*len - 1]))
    s[--*len] = '\0';
  while (*len > 0 && is_xml_space (*s))
    {
      s++;
      (*len)--;
    }
  return s;
}

/* Creates a parser with namespace processing and no DTD processing. */
static XML_Parser
parser_new (void *state, XML_StartElementHandler start,
            XML_EndElementHandler end, XML_CharacterDataHandler text,
            XML_StartDoctypeDeclHandler doctype)
{
  XML_Parser xp = XML_ParserCreateNS (NULL, NS_SEP);

  if (xp == NULL)
    return NULL;
  XML_SetUserData (xp, state);
  XML_SetElementHandler (xp, start, end);
  XML_SetCharacterDataHandler (xp, text);
  XML_SetStartDoctypeDeclHandler (xp, doctype);
  XML_SetParamEntityParsing (xp, XML_PARAM_ENTITY_PARSING_NEVER);
  return xp;
}

/* Feeds the whole document; returns the final XML_Parse status. */
static enum XML_Status
parser_feed (XML_Parser xp, const char *xml, size_t len)
{
  enum XML_Status st;
  size_t off = 0, n;

  do
    {
      n = len - off < FEED_MAX ? len - off : FEED_MAX;
      st = XML_Parse (xp, xml + off, (int)n, off + n == len);
      off += n;
    }
  while (st == XML_STATUS_OK && off < len);
  return st;
}

static int
hex_value (char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int
s3xml_url_decode (char *s, size_t *len, bool plus_space)
{
  size_t i, j;

  /* Check first, so that a malformed string is left as it was. */
  for (i = 0; i < *len; i++)
    if (s[i] == '%')
      {
        if (*len - i < 3 || hex_value (s[i + 1]) < 0
            || hex_value (s[i + 2]) < 0)
          return -1;
        i += 2;
      }

  for (i = j = 0; i < *len; i++, j++)
    {
      if (s[i] == '%')
        {
          s[j] = (char)(hex_value (s[i + 1]) << 4 | hex_value (s[i + 2]));
          i += 2;
        }
      else if (s[i] == '+' && plus_space)
        s[j] = ' ';
      else
        s[j] = s[i];
    }
  /* The string shrank: end it again. */
  if (j < *len)
    s[j] = '\0';
  *len = j;
  return 0;
}

/* ---- ListObjectsV2 pages ---- */

enum elem
{
  E_OTHER, /* skipped, with everything inside */
  E_ROOT,
  E_CONTENTS,
  E_COMMON_PREFIXES,
  /* Leaves, whose text is read: */
  E_IS_TRUNCATED,
  E_NEXT_TOKEN,
  E_ENCODING_TYPE,
  E_KEY,
  E_SIZE,
  E_ETAG,
  E_LAST_MODIFIED,
  E_PREFIX,
};

static const char *const elem_names[] = {
  [E_OTHER] = "?",
  [E_ROOT] = "ListBucketResult",
  [E_CONTENTS] = "Contents",
  [E_COMMON_PREFIXES] = "CommonPrefixes",
  [E_IS_TRUNCATED] = "IsTruncated",
  [E_NEXT_TOKEN] = "NextContinuationToken",
  [E_ENCODING_TYPE] = "EncodingType",
  [E_KEY] = "Key",
  [E_SIZE] = "Size",
  [E_ETAG] = "ETag",
  [E_LAST_MODIFIED] = "LastModified",
  [E_PREFIX] = "Prefix",
};

static bool
is_leaf (enum elem e)
{
  return e >= E_IS_TRUNCATED;
}

static size_t
leaf_max (enum elem e)
{
  switch (e)
    {
    case E_KEY:
    case E_PREFIX: return KEY_TEXT_MAX;
    case E_NEXT_TOKEN: return TOKEN_MAX;
    case E_ETAG: return ETAG_MAX;
    default: return SHORT_TEXT_MAX;
    }
}

struct list_state
{
  XML_Parser xp;
  struct s3_listing *out;
  struct s3xml_list_page *page;
  struct s3bd_error *err;
  size_t first; /* out->n when this page began */
  bool failed;  /* err is set; ignore further events */
  bool root_done;

  enum elem stack[DEPTH_MAX];
  unsigned depth;

  /* Seen once each in the root. */
  bool have_truncated, have_token, have_encoding, url_encoded;
  size_t prefixes_cap;

  /* The Contents being read. */
  bool have_key, have_size, have_etag, have_mtime;
  size_t key_len;
  uint64_t size;
  int64_t mtime;
  uint32_t mtime_nsec;
  char key[KEY_TEXT_MAX + 1];
  char etag[ETAG_MAX + 1];

  /* Text of the open leaf. */
  size_t text_len;
  char text[TOKEN_MAX + 1];
};

static void list_fail (struct list_state *st, enum s3bd_errcode code,
                       const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

/* Records the first error, with where expat is, and stops the parser. */
static void
list_fail (struct list_state *st, enum s3bd_errcode code, const char *fmt, ...)
{
  char why[512];
  va_list ap;

  if (st->failed)
    return;
  st->failed = true;
  va_start (ap, fmt);
  vsnprintf (why, sizeof why, fmt, ap);
  va_end (ap);
  s3bd_fail (st->err, code, "ListObjectsV2 response line %lu column %lu: %s",
             (unsigned long)XML_GetCurrentLineNumber (st->xp),
             (unsigned long)XML_GetCurrentColumnNumber (st->xp), why);
  XML_StopParser (st->xp, XML_FALSE);
}

static enum elem
list_classify (struct list_state *st, const char *name)
{
  enum elem parent;

  if (st->depth == 0)
    {
      if (strcmp (name, "ListBucketResult") != 0)
        {
          list_fail (st, S3BD_EPROTO,
                     "root element is <%.64s>, not <ListBucketResult>", name);
          return E_OTHER;
        }
      return E_ROOT;
    }

  parent = st->stack[st->depth - 1];
  if (is_leaf (parent))
    {
      list_fail (st, S3BD_EPROTO, "element <%.64s> inside <%s>", name,
                 elem_names[parent]);
      return E_OTHER;
    }
  switch (parent)
    {
    case E_ROOT:
      if (strcmp (name, "Contents") == 0)
        return E_CONTENTS;
      if (strcmp (name, "CommonPrefixes") == 0)
        return E_COMMON_PREFIXES;
      if (strcmp (name, "IsTruncated") == 0)
        return E_IS_TRUNCATED;
      if (strcmp (name, "NextContinuationToken") == 0)
        return E_NEXT_TOKEN;
      if (strcmp (name, "EncodingType") == 0)
        return E_ENCODING_TYPE;
      break;
    case E_CONTENTS:
      if (strcmp (name, "Key") == 0)
        return E_KEY;
      if (strcmp (name, "Size") == 0)
        return E_SIZE;
      if (strcmp (name, "ETag") == 0)
        return E_ETAG;
      if (strcmp (name, "LastModified") == 0)
        return E_LAST_MODIFIED;
      break;
    case E_COMMON_PREFIXES:
      if (strcmp (name, "Prefix") == 0)
        return E_PREFIX;
      break;
    default: break;
    }
  return E_OTHER;
}

/* Whether a leaf was already seen in its parent. */
static bool *
list_seen (struct list_state *st, enum elem e)
{
  switch (e)
    {
    case E_IS_TRUNCATED: return &st->have_truncated;
    case E_NEXT_TOKEN: return &st->have_token;
    case E_ENCODING_TYPE: return &st->have_encoding;
    case E_KEY: return &st->have_key;
    case E_SIZE: return &st->have_size;
    case E_ETAG: return &st->have_etag;
    case E_LAST_MODIFIED: return &st->have_mtime;
    default: return NULL;
    }
}

static void XMLCALL
list_start (void *arg, const XML_Char *qname, const XML_Char **attrs)
{
  struct list_state *st = arg;
  const char *name = local_name (qname);
  enum elem e;
  bool *seen;

  if (st->failed)
    return;
  if (st->depth == DEPTH_MAX)
    {
      list_fail (st, S3BD_EPROTO, "elements nested more than %d deep",
                 DEPTH_MAX);
      return;
    }
  e = list_classify (st, name);
  if (st->failed)
    return;

  seen = list_seen (st, e);
  if (seen != NULL)
    {
      if (*seen)
        {
          list_fail (st, S3BD_EPROTO, "<%s> appears twice in <%s>",
                     elem_names[e], elem_names[st->stack[st->depth - 1]]);
          return;
        }
      *seen = true;
    }
  if (e == E_CONTENTS)
    {
      st->have_key = st->have_size = st->have_etag = st->have_mtime = false;
      st->mtime = 0;
      st->mtime_nsec = 0;
    }
  if (is_leaf (e))
    st->text_len = 0;
  st->stack[st->depth++] = e;
}

static void XMLCALL
list_text (void *arg, const XML_Char *s, int len)
{
  struct list_state *st = arg;
  enum elem e;

  if (st->failed || st->depth == 0)
    return;
  e = st->stack[st->depth - 1];
  if (!is_leaf (e))
    return;
  if ((size_t)len > leaf_max (e) - st->text_len)
    {
      list_fail (st, S3BD_EPROTO, "<%s> longer than %zu bytes", elem_names[e],
                 leaf_max (e));
      return;
    }
  memcpy (st->text + st->text_len, s, (size_t)len);
  st->text_len += (size_t)len;
}

/* Parses a decimal uint64 with nothing else around it but white space. */
static int
parse_u64 (char *s, size_t len, uint64_t *out)
{
  uint64_t v = 0;
  size_t i;

  s = trim (s, &len);
  if (len == 0)
    return -1;
  for (i = 0; i < len; i++)
    {
      unsigned d;

      if (s[i] < '0' || s[i] > '9')
        return -1;
      d = (unsigned)(s[i] - '0');
      if (v > (UINT64_MAX - d) / 10)
        return -1;
      v = v * 10 + d;
    }
  *out = v;
  return 0;
}

static int
list_add_prefix (struct list_state *st, const char *s, size_t len)
{
  struct s3xml_list_page *page = st->page;
  char *copy;

  if (page->nprefixes == st->prefixes_cap)
    {
      size_t cap = st->prefixes_cap ? st->prefixes_cap * 2 : 64;
      char **p;

      if (cap > SIZE_MAX / sizeof *p)
        return -1;
      p = realloc (page->prefixes, cap * sizeof *p);
      if (p == NULL)
        return -1;
      page->prefixes = p;
      st->prefixes_cap = cap;
    }
  copy = malloc (len + 1);
  if (copy == NULL)
    return -1;
  memcpy (copy, s, len);
  copy[len] = '\0';
  page->prefixes[page->nprefixes++] = copy;
  return 0;
}

static void
list_end_leaf (struct list_state *st, enum elem e)
{
  size_t len = st->text_len;
  char *s;

  st->text[len] = '\0';
  switch (e)
    {
    case E_IS_TRUNCATED:
      s = trim (st->text, &len);
      if (strcmp (s, "true") == 0)
        st->page->truncated = true;
      else if (strcmp (s, "false") == 0)
        st->page->truncated = false;
      else
        list_fail (st, S3BD_EPROTO,
                   "<IsTruncated> is \"%.32s\", "
                   "not true or false",
                   s);
      break;

    case E_NEXT_TOKEN:
      /* Opaque, and never url-encoded. */
      st->page->next_token = strdup (st->text);
      if (st->page->next_token == NULL)
        list_fail (st, S3BD_ENOMEM, "out of memory");
      break;

    case E_ENCODING_TYPE:
      s = trim (st->text, &len);
      if (strcmp (s, "url") != 0)
        list_fail (st, S3BD_EPROTO, "unknown <EncodingType> \"%.32s\"", s);
      st->url_encoded = true;
      break;

    case E_KEY:
      memcpy (st->key, st->text, len + 1);
      st->key_len = len;
      break;

    case E_SIZE:
      if (parse_u64 (st->text, len, &st->size) == -1)
        list_fail (st, S3BD_EPROTO, "<Size> is \"%.32s\", not a number",
                   st->text);
      break;

    case E_ETAG: memcpy (st->etag, st->text, len + 1); break;

    case E_LAST_MODIFIED:
      s = trim (st->text, &len);
      if (parse_iso8601 (s, &st->mtime, &st->mtime_nsec) == -1)
        list_fail (st, S3BD_EPROTO,
                   "<LastModified> is \"%.40s\", not an ISO 8601 time", s);
      break;

    case E_PREFIX:
      if (list_add_prefix (st, st->text, len) == -1)
        list_fail (st, S3BD_ENOMEM, "out of memory");
      break;

    default: break;
    }
}

static void XMLCALL
list_end (void *arg, const XML_Char *qname)
{
  struct list_state *st = arg;
  enum elem e;

  if (st->failed)
    return;
  e = st->stack[--st->depth];
  if (is_leaf (e))
    {
      list_end_leaf (st, e);
      return;
    }
  switch (e)
    {
    case E_ROOT: st->root_done = true; break;
    case E_CONTENTS:
      if (!st->have_key)
        list_fail (st, S3BD_EPROTO, "<Contents> without <Key>");
      else if (!st->have_size)
        list_fail (st, S3BD_EPROTO, "<Contents> without <Size>");
      else if (s3_listing_add (st->out, st->key, st->key_len,
                               st->have_etag ? st->etag : "", st->size,
                               st->mtime, st->mtime_nsec)
               == -1)
        list_fail (st, S3BD_ENOMEM, "out of memory");
      break;
    default: break;
    }
}

static void XMLCALL
list_doctype (void *arg, const XML_Char *name, const XML_Char *sysid,
              const XML_Char *pubid, int has_internal_subset)
{
  list_fail (arg, S3BD_EPROTO, "DOCTYPE not allowed");
}

/* Decodes (when the page says so) and checks one key or prefix, in place.
 * what and i name it in the error.
 */
static int
list_check_name (struct list_state *st, char *s, const char *what, size_t i)
{
  size_t len = strlen (s);

  /* '+' is a space: AWS encodes a space as '+' and a '+' as %2B (botocore
   * decodes with unquote_plus); Swift encodes a space as %20.
   */
  if (st->url_encoded && s3xml_url_decode (s, &len, true) == -1)
    return s3bd_fail (st->err, S3BD_EPROTO,
                      "ListObjectsV2 response: %s %zu of the page has a "
                      "malformed %%-escape",
                      what, i + 1);
  if (memchr (s, '\0', len) != NULL)
    return s3bd_fail (st->err, S3BD_EPROTO,
                      "ListObjectsV2 response: %s %zu of the page contains "
                      "a NUL byte",
                      what, i + 1);
  if (len > KEY_MAX)
    return s3bd_fail (st->err, S3BD_EPROTO,
                      "ListObjectsV2 response: %s %zu of the page is %zu "
                      "bytes long, over S3's limit of %d",
                      what, i + 1, len, KEY_MAX);
  return 0;
}

/* What can only be checked once the whole page is in. */
static int
list_finish (struct list_state *st)
{
  struct s3xml_list_page *page = st->page;
  size_t i;

  if (!st->root_done)
    return s3bd_fail (st->err, S3BD_EPROTO,
                      "ListObjectsV2 response: document incomplete");
  if (!st->have_truncated)
    return s3bd_fail (st->err, S3BD_EPROTO,
                      "ListObjectsV2 response: no <IsTruncated>");
  if (page->truncated && (page->next_token == NULL || !*page->next_token))
    return s3bd_fail (st->err, S3BD_EPROTO,
                      "ListObjectsV2 response: <IsTruncated> is true but "
                      "there is no <NextContinuationToken>");
  if (!page->truncated)
    {
      free (page->next_token);
      page->next_token = NULL;
    }

  for (i = st->first; i < st->out->n; i++)
    {
      char *key = st->out->objs[i].key;

      if (list_check_name (st, key, "key", i - st->first) == -1)
        return -1;
      if (*key == '\0')
        return s3bd_fail (st->err, S3BD_EPROTO,
                          "ListObjectsV2 response: key %zu of the page is "
                          "empty",
                          i - st->first + 1);
    }
  for (i = 0; i < page->nprefixes; i++)
    if (list_check_name (st, page->prefixes[i], "prefix", i) == -1)
      return -1;
  page->nkeys = st->out->n - st->first;
  return 0;
}

/* Whether expat stopped because the document ended before it was whole. */
static bool
ends_early (enum XML_Error e)
{
  return e == XML_ERROR_NO_ELEMENTS || e == XML_ERROR_UNCLOSED_TOKEN
         || e == XML_ERROR_PARTIAL_CHAR
         || e == XML_ERROR_UNCLOSED_CDATA_SECTION;
}

int
s3xml_parse_list (const char *xml, size_t len, struct s3_listing *out,
                  struct s3xml_list_page *page, struct s3bd_error *err)
{
  struct list_state *st;
  int r = -1;

  memset (page, 0, sizeof *page);
  st = calloc (1, sizeof *st);
  if (st == NULL)
    return s3bd_fail (err, S3BD_ENOMEM,
                      "ListObjectsV2 response: "
                      "out of memory");
  st->out = out;
  st->page = page;
  st->err = err;
  st->first = out->n;
  st->xp = parser_new (st, list_start, list_end, list_text, list_doctype);
  if (st->xp == NULL)
    {
      s3bd_fail (err, S3BD_ENOMEM, "ListObjectsV2 response: out of memory");
      goto out;
    }

  if (len == 0)
    {
      s3bd_fail (err, S3BD_EPROTO, "ListObjectsV2 response: empty body");
      goto out;
    }
  if (parser_feed (st->xp, xml, len) != XML_STATUS_OK)
    {
      if (!st->failed)
        s3bd_fail (err, S3BD_EPROTO,
                   "ListObjectsV2 response line %lu column %lu: %s%s",
                   (unsigned long)XML_GetCurrentLineNumber (st->xp),
                   (unsigned long)XML_GetCurrentColumnNumber (st->xp),
                   XML_ErrorString (XML_GetErrorCode (st->xp)),
                   ends_early (XML_GetErrorCode (st->xp))
                       ? " (the response is truncated)"
                       : "");
      goto out;
    }
  if (st->failed)
    goto out;
  r = list_finish (st);

out:
  if (r == -1)
    {
      /* Drop this page's objects; their strings stay in the arena. */
      out->n = st->first;
      s3xml_list_page_free (page);
    }
  if (st->xp)
    XML_ParserFree (st->xp);
  free (st);
  return r;
}

void
s3xml_list_page_free (struct s3xml_list_page *page)
{
  size_t i;

  if (page == NULL)
    return;
  free (page->next_token);
  for (i = 0; i < page->nprefixes; i++)
    free (page->prefixes[i]);
  free (page->prefixes);
  memset (page, 0, sizeof *page);
}

/* ---- Error documents ---- */

enum err_elem
{
  EE_OTHER,
  EE_ROOT,
  EE_CODE,
  EE_MESSAGE
};

struct error_state
{
  XML_Parser xp;
  bool failed;
  unsigned depth;
  enum err_elem top; /* the open element at depth 1 or 2 */
  size_t code_len, message_len;
  char code[ERROR_TEXT_MAX + 1];
  char message[ERROR_TEXT_MAX + 1];
};

static void
error_stop (struct error_state *st)
{
  st->failed = true;
  XML_StopParser (st->xp, XML_FALSE);
}

static void XMLCALL
error_start (void *arg, const XML_Char *qname, const XML_Char **attrs)
{
  struct error_state *st = arg;
  const char *name = local_name (qname);

  if (st->failed)
    return;
  if (st->depth == 0)
    {
      if (strcmp (name, "Error") != 0)
        {
          error_stop (st);
          return;
        }
      st->top = EE_ROOT;
    }
  else if (st->depth == 1)
    {
      /* The first Code and the first Message count. */
      if (strcmp (name, "Code") == 0 && st->code_len == 0)
        st->top = EE_CODE;
      else if (strcmp (name, "Message") == 0 && st->message_len == 0)
        st->top = EE_MESSAGE;
      else
        st->top = EE_OTHER;
    }
  else if (st->depth >= DEPTH_MAX)
    {
      error_stop (st);
      return;
    }
  st->depth++;
}

static void XMLCALL
error_end (void *arg, const XML_Char *qname)
{
  struct error_state *st = arg;

  if (st->failed)
    return;
  st->depth--;
  if (st->depth == 1)
    st->top = EE_ROOT;
}

/* Appends what fits; the rest of a long message is dropped. */
static void
error_append (char *buf, size_t *len, const char *s, size_t n)
{
  if (n > ERROR_TEXT_MAX - *len)
    n = ERROR_TEXT_MAX - *len;
  memcpy (buf + *len, s, n);
  *len += n;
}

static void XMLCALL
error_text (void *arg, const XML_Char *s, int len)
{
  struct error_state *st = arg;

  if (st->failed || st->depth != 2)
    return;
  if (st->top == EE_CODE)
    error_append (st->code, &st->code_len, s, (size_t)len);
  else if (st->top == EE_MESSAGE)
    error_append (st->message, &st->message_len, s, (size_t)len);
}

static void XMLCALL
error_doctype (void *arg, const XML_Char *name, const XML_Char *sysid,
               const XML_Char *pubid, int has_internal_subset)
{
  error_stop (arg);
}

/* Copies text for an error message: trimmed, control characters (a
 * server's newlines, escapes) replaced by spaces, cut to fit.
 */
static void
error_copy (char *dst, size_t dst_size, char *src, size_t len)
{
  size_t i;

  if (dst_size == 0)
    return;
  src = trim (src, &len);
  if (len > dst_size - 1)
    len = dst_size - 1;
  for (i = 0; i < len; i++)
    {
      unsigned char c = (unsigned char)src[i];

      dst[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
  dst[len] = '\0';
}

int
s3xml_parse_error (const char *xml, size_t len, char *code, size_t code_size,
                   char *message, size_t message_size)
{
  struct error_state *st;
  int r = -1;

  if (code_size > 0)
    code[0] = '\0';
  if (message_size > 0)
    message[0] = '\0';
  st = calloc (1, sizeof *st);
  if (st == NULL)
    return -1;
  st->xp = parser_new (st, error_start, error_end, error_text, error_doctype);
  if (st->xp == NULL)
    goto out;
  if (parser_feed (st->xp, xml, len) != XML_STATUS_OK || st->failed)
    goto out;
  error_copy (code, code_size, st->code, st->code_len);
  error_copy (message, message_size, st->message, st->message_len);
  r = 0;

out:
  if (st->xp)
    XML_ParserFree (st->xp);
  free (st);
  return r;
}
