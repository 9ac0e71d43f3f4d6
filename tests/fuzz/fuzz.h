/* s3bd: what the libFuzzer targets share (tests/fuzz/fuzz-*.c, built by
 * scripts/fuzz with -DS3BD_FUZZ=ON).
 *
 * Each target feeds one parser the fuzzer's bytes and checks what the
 * parser promises about its output: a crash, a sanitizer report or a
 * failed FUZZ_CHECK is a bug in the library, to fix there with a unit
 * test that reproduces it.
 */
#ifndef S3BD_FUZZ_H
#define S3BD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* A broken promise: say which, then abort so that libFuzzer keeps the
 * input.
 */
#define FUZZ_CHECK(cond)                                                       \
  do                                                                           \
    {                                                                          \
      if (!(cond))                                                             \
        {                                                                      \
          fprintf (stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__,         \
                   __LINE__, #cond);                                           \
          abort ();                                                            \
        }                                                                      \
    }                                                                          \
  while (0)

/* A NUL-terminated copy of the input (the text parsers want strings). */
static inline char *
fuzz_strdup (const uint8_t *data, size_t size)
{
  char *s = malloc (size + 1);

  if (s == NULL)
    abort ();
  memcpy (s, data, size);
  s[size] = '\0';
  return s;
}

/* An error message is set, ends within its buffer and is not empty. */
#define FUZZ_CHECK_ERROR(err)                                                  \
  FUZZ_CHECK ((err)->code != 0 && (err)->msg[0] != '\0'                        \
              && memchr ((err)->msg, '\0', sizeof (err)->msg) != NULL)

#endif
