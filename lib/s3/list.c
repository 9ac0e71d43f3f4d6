/* s3bd: listing a prefix with ListObjectsV2.
 *
 * Sequential: one paged listing of the whole prefix.  Parallel: a walk of
 * the key tree by '/': every "directory" is listed with a delimiter, its
 * objects kept and its common prefixes queued as more directories, with up
 * to opts->parallel listings in flight on the client's engine.  Both give
 * the same objects; the result is sorted by key either way.  The walk
 * costs one extra request per directory, and a flat prefix of a million
 * keys gains nothing from it: it pays off for trees of many directories,
 * which is what training datasets look like.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3bd/s3.h"
#include "s3bd/s3xml.h"
#include "s3int.h"

struct walker
{
  struct walker *next; /* in the pending list */
  struct s3_request req;
  char *prefix;
  char *token;
  char max_keys[16];
  struct list_state *st;
};

struct list_state
{
  struct s3_client *c;
  const char *bucket;
  const struct s3_list_opts *opts;
  bool delimiter;
  struct s3_listing *out;
  struct walker *pending; /* directories not yet listed */
  unsigned active;        /* walkers with a request in flight */
  uint64_t requests;
  int failed;
  struct s3bd_error err;
};

static void
walker_free (struct walker *w)
{
  if (w == NULL)
    return;
  s3_request_release (&w->req);
  free (w->prefix);
  free (w->token);
  free (w);
}

static struct walker *
walker_new (struct list_state *st, const char *prefix)
{
  struct walker *w = calloc (1, sizeof *w);

  if (w == NULL || (w->prefix = strdup (prefix)) == NULL)
    {
      free (w);
      return NULL;
    }
  w->st = st;
  return w;
}

/* Fills the walker's request for its next page. */
static void
walker_prepare (struct walker *w)
{
  const struct s3_list_opts *o = w->st->opts;
  struct s3_request *r = &w->req;
  size_t n = 0;

  memset (r, 0, sizeof *r);
  r->method = S3_GET;
  r->bucket = w->st->bucket;
  r->key = "";
  r->params[n++] = (struct s3_param){ "list-type", "2" };
  r->params[n++] = (struct s3_param){ "prefix", w->prefix };
  r->params[n++] = (struct s3_param){ "encoding-type", "url" };
  if (w->st->delimiter)
    r->params[n++] = (struct s3_param){ "delimiter", "/" };
  if (o && o->max_keys)
    {
      snprintf (w->max_keys, sizeof w->max_keys, "%u", o->max_keys);
      r->params[n++] = (struct s3_param){ "max-keys", w->max_keys };
    }
  if (w->token)
    r->params[n++] = (struct s3_param){ "continuation-token", w->token };
  else if (o && o->start_after && !w->st->delimiter)
    r->params[n++] = (struct s3_param){ "start-after", o->start_after };
  r->nparams = n;
}

static void
fail_once (struct list_state *st, const struct s3bd_error *e)
{
  if (!st->failed)
    st->err = *e;
  st->failed = 1;
}

static void walker_done (struct s3_request *r, void *arg);

static void
walker_submit (struct walker *w)
{
  walker_prepare (w);
  w->req.done = walker_done;
  w->req.arg = w;
  w->st->active++;
  w->st->requests++;
  s3_engine_submit (s3_client_engine (w->st->c), &w->req);
}

/* Runs in the engine's thread, which is the listing's own thread. */
static void
walker_done (struct s3_request *r, void *arg)
{
  struct walker *w = arg;
  struct list_state *st = w->st;
  struct s3xml_list_page page = { 0 };
  struct s3bd_error e = { 0 };

  st->active--;
  if (r->rc)
    {
      fail_once (st, &r->err);
      walker_free (w);
      return;
    }
  if (s3xml_parse_list (r->body, r->body_len, st->out, &page, &e) == -1)
    {
      s3bd_error_prefix (&e, "listing s3://%s/%s", st->bucket, w->prefix);
      fail_once (st, &e);
      walker_free (w);
      return;
    }
  s3_request_release (r);
  for (size_t i = 0; i < page.nprefixes && !st->failed; i++)
    {
      struct walker *sub;

      /* A listing never returns its own prefix as a common prefix; if a
       * server did, walking it again would loop for ever.
       */
      if (strcmp (page.prefixes[i], w->prefix) == 0)
        continue;
      sub = walker_new (st, page.prefixes[i]);
      if (sub == NULL)
        {
          s3bd_fail (&e, S3BD_ENOMEM, "out of memory");
          fail_once (st, &e);
          break;
        }
      sub->next = st->pending;
      st->pending = sub;
    }
  if (st->opts && st->opts->progress)
    st->opts->progress (st->opts->progress_arg, st->out->n, st->requests);
  free (w->token);
  w->token = page.next_token;
  page.next_token = NULL;
  if (page.truncated && w->token == NULL)
    {
      s3bd_fail (&e, S3BD_EPROTO,
                 "listing s3://%s/%s: truncated page "
                 "without a continuation token",
                 st->bucket, w->prefix);
      fail_once (st, &e);
    }
  if (page.truncated && !st->failed)
    walker_submit (w);
  else
    walker_free (w);
  s3xml_list_page_free (&page);
}

int
s3_list (struct s3_client *c, const char *bucket, const char *prefix,
         const struct s3_list_opts *opts, struct s3_listing *out,
         struct s3bd_error *err)
{
  struct list_state st = { .c = c, .bucket = bucket, .opts = opts, .out = out };
  unsigned parallel = opts && opts->parallel > 1 ? opts->parallel : 1;
  struct s3_engine *e = s3_client_engine (c);
  struct walker *w;

  if (e == NULL)
    return s3bd_fail (err, S3BD_ENOMEM, "cannot create the transfer engine");
  st.delimiter = parallel > 1;
  if ((st.pending = walker_new (&st, prefix ? prefix : "")) == NULL)
    return s3bd_fail (err, S3BD_ENOMEM, "out of memory");

  while (st.active > 0 || (st.pending && !st.failed))
    {
      while (!st.failed && st.active < parallel && (w = st.pending))
        {
          st.pending = w->next;
          walker_submit (w);
        }
      s3_engine_run (e, 1000);
    }
  while ((w = st.pending))
    {
      st.pending = w->next;
      walker_free (w);
    }
  if (st.failed)
    {
      if (err)
        *err = st.err;
      return -1;
    }
  s3_listing_sort (out);
  return 0;
}
