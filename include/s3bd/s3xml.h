/* s3bd: S3's XML responses (ListObjectsV2 pages, error documents), parsed
 * with expat.  Truncated or malformed XML is an error, never a short
 * listing.
 */
#ifndef S3BD_S3XML_H
#define S3BD_S3XML_H

#include <stdbool.h>
#include <stddef.h>

#include "s3bd/error.h"
#include "s3bd/s3.h"

struct s3xml_list_page
{
  bool truncated;
  char *next_token; /* malloc'd, NULL when not truncated */
  char **prefixes;  /* CommonPrefixes, decoded, malloc'd */
  size_t nprefixes;
  size_t nkeys; /* Contents elements in this page */
};

/* Parses one ListBucketResult page, appending objects to out.  Keys and
 * prefixes are URL-decoded when the page says EncodingType=url; the
 * continuation token never is (S3 does not encode it).  On error, returns
 * -1 with out->n as it was and page empty.
 */
int s3xml_parse_list (const char *xml, size_t len, struct s3_listing *out,
                      struct s3xml_list_page *page, struct s3bd_error *err);
void s3xml_list_page_free (struct s3xml_list_page *page);

/* Parses an <Error> document into code and message (either may come back
 * empty).  Returns 0, or -1 when the body is not an S3 error document.
 */
int s3xml_parse_error (const char *xml, size_t len, char *code,
                       size_t code_size, char *message, size_t message_size);

/* Decodes s[0..*len) in place: %XX, and '+' as space when plus_space;
 * sets *len to the decoded length and ends the string there when it
 * shrank.  Returns -1, leaving s as it was, on a malformed escape.
 */
int s3xml_url_decode (char *s, size_t *len, bool plus_space);

#endif
