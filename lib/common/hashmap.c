/* s3bd: the hash map's cold paths (growing, removing).  See hashmap.h. */
#include <assert.h>
#include <stdlib.h>

#include "common/hashmap.h"

#define MIN_CAP 16

int
hashmap_reserve (struct hashmap *m, size_t n)
{
  struct hashmap_slot *old = m->slots;
  size_t oldcap = m->cap, cap = m->cap ? m->cap : MIN_CAP;
  unsigned bits = 0;
  struct hashmap bigger;

  /* At most half full: linear probing stays short. */
  while (cap / 2 < n)
    {
      if (cap > SIZE_MAX / 2 / sizeof *old)
        return -1;
      cap *= 2;
    }
  if (cap == oldcap)
    return 0;
  while (((size_t)1 << bits) < cap)
    bits++;
  bigger.slots = calloc (cap, sizeof *bigger.slots);
  if (bigger.slots == NULL)
    return -1;
  bigger.cap = cap;
  bigger.n = 0;
  bigger.shift = 64 - bits;
  for (size_t i = 0; i < oldcap; i++)
    if (old[i].value)
      {
        size_t j = hashmap_home_ (&bigger, old[i].hash);

        while (bigger.slots[j].value)
          j = (j + 1) & (cap - 1);
        bigger.slots[j] = old[i];
        bigger.n++;
      }
  assert (bigger.n == m->n);
  free (old);
  *m = bigger;
  return 0;
}

void
hashmap_free (struct hashmap *m)
{
  free (m->slots);
  m->slots = NULL;
  m->cap = m->n = 0;
  m->shift = 0;
}

void
hashmap_remove_slot (struct hashmap *m, struct hashmap_slot *slot)
{
  size_t mask = m->cap - 1;
  size_t i = (size_t)(slot - m->slots);

  assert (i < m->cap && slot->value != 0);
  m->slots[i].value = 0;
  m->n--;
  /* Shift later entries of the run back into the hole, so that every
   * remaining key stays reachable from its home slot without tombstones.
   */
  for (size_t j = (i + 1) & mask; m->slots[j].value; j = (j + 1) & mask)
    {
      size_t home = hashmap_home_ (m, m->slots[j].hash);

      /* j may move back to i unless its home lies cyclically in (i, j]. */
      if ((j > i && (home <= i || home > j))
          || (j < i && (home <= i && home > j)))
        {
          m->slots[i] = m->slots[j];
          m->slots[j].value = 0;
          i = j;
        }
    }
}
