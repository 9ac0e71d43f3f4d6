/* s3bd: the hash map, private to lib/.
 *
 * One map for keys of every shape: the caller hashes its key to 64 bits
 * and stores a nonzero 64-bit value (an index + 1, a pointer); the map
 * keeps the pair in an open-addressing table (linear probing, at most
 * half full, a power-of-two size) and never looks at the key itself.  A
 * lookup compares the stored hash first and calls the caller's equality
 * function only on a match, so a 4 KiB page is compared byte by byte
 * once per hit, not once per probe; growing rehashes from the stored
 * hashes without calling back.
 *
 * A key that is itself 64 bits (a page number) is its own hash: pass
 * eq NULL and the hash compare is the key compare.  The map spreads the
 * hash over the table itself (Fibonacci hashing), so such identity
 * hashes, or hashes weak in the low bits, still probe short.
 *
 * Removal shifts later entries back (no tombstones): a table that sees
 * as many removals as inserts, like the image builder's page map, never
 * fills with dead slots.
 *
 * All zeros is an empty map.  Iterate with
 *   for (size_t i = 0; i < m->cap; i++) if (m->slots[i].value) ...
 * in an order that depends on the map's history, so sort what must be
 * deterministic.  Not thread-safe: the caller locks.
 */
#ifndef S3BD_HASHMAP_H
#define S3BD_HASHMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hashmap_slot
{
  uint64_t hash;
  uint64_t value; /* 0: empty */
};

struct hashmap
{
  struct hashmap_slot *slots;
  size_t cap;     /* a power of two, or 0 */
  size_t n;       /* values stored */
  unsigned shift; /* 64 - log2 (cap) */
};

/* Is the key of this (nonzero) value the key the caller looks for?  ctx
 * is what the caller passed to the lookup.
 */
typedef bool (*hashmap_eq_fn) (const void *ctx, uint64_t value);

/* Room for n values in all without growing: 0, or -1 on ENOMEM (the map
 * is then unchanged).
 */
int hashmap_reserve (struct hashmap *m, size_t n);

void hashmap_free (struct hashmap *m);

static inline size_t
hashmap_home_ (const struct hashmap *m, uint64_t hash)
{
  return (size_t)((hash * UINT64_C (0x9E3779B97F4A7C15)) >> m->shift);
}

/* The slot holding the key, or NULL.  The caller may change the slot's
 * value to another nonzero value of the same key.
 */
static inline struct hashmap_slot *
hashmap_lookup (const struct hashmap *m, uint64_t hash, hashmap_eq_fn eq,
                const void *ctx)
{
  size_t mask = m->cap - 1;

  if (m->n == 0)
    return NULL;
  for (size_t i = hashmap_home_ (m, hash);; i = (i + 1) & mask)
    {
      struct hashmap_slot *s = &m->slots[i];

      if (s->value == 0)
        return NULL;
      if (s->hash == hash && (eq == NULL || eq (ctx, s->value)))
        return s;
    }
}

/* Adds a key the map does not hold (the caller looked it up) with a
 * nonzero value: 0, or -1 on ENOMEM.
 */
static inline int
hashmap_insert (struct hashmap *m, uint64_t hash, uint64_t value)
{
  size_t mask, i;

  if (m->n + 1 > m->cap / 2 && hashmap_reserve (m, m->n + 1) == -1)
    return -1;
  mask = m->cap - 1;
  for (i = hashmap_home_ (m, hash); m->slots[i].value; i = (i + 1) & mask)
    ;
  m->slots[i].hash = hash;
  m->slots[i].value = value;
  m->n++;
  return 0;
}

/* Removes the value in slot (from hashmap_lookup); other slots may move,
 * so pointers to them are stale afterwards.
 */
void hashmap_remove_slot (struct hashmap *m, struct hashmap_slot *slot);

/* Removes the key if the map holds it; returns its value, or 0. */
static inline uint64_t
hashmap_remove (struct hashmap *m, uint64_t hash, hashmap_eq_fn eq,
                const void *ctx)
{
  struct hashmap_slot *s = hashmap_lookup (m, hash, eq, ctx);
  uint64_t value;

  if (s == NULL)
    return 0;
  value = s->value;
  hashmap_remove_slot (m, s);
  return value;
}

#endif
