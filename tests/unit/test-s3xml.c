/* Unit tests of lib/s3xml.c (ListObjectsV2 pages, error documents, url
 * decoding) and lib/listing.c (the listing and its string arena).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "s3bd/s3xml.h"

#define NS "http://s3.amazonaws.com/doc/2006-03-01/"

/* Parses xml (a C string) into a fresh listing and page. */
struct parsed
{
  struct s3_listing l;
  struct s3xml_list_page page;
  struct s3bd_error err;
  int r;
};

static void
parse (struct parsed *p, const char *xml)
{
  memset (p, 0, sizeof *p);
  p->r = s3xml_parse_list (xml, strlen (xml), &p->l, &p->page, &p->err);
}

static void
parsed_free (struct parsed *p)
{
  s3xml_list_page_free (&p->page);
  s3_listing_free (&p->l);
}

/* Asserts that xml is refused as EPROTO with a message containing want. */
static void
assert_refused (const char *xml, const char *want)
{
  struct parsed p;

  parse (&p, xml);
  if (p.r != -1 || p.err.code != S3BD_EPROTO
      || strstr (p.err.msg, want) == NULL)
    fail_msg ("expected EPROTO with \"%s\", got r=%d code=%s msg=\"%s\"", want,
              p.r, s3bd_errname (p.err.code), p.err.msg);
  assert_int_equal (p.l.n, 0);
  assert_null (p.page.next_token);
  assert_null (p.page.prefixes);
  parsed_free (&p);
}

/* As AWS sends it: namespace, EncodingType before the Contents, the
 * documented elements S3 adds that we skip (Owner, ChecksumAlgorithm...).
 */
static const char aws_page[]
    = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<ListBucketResult xmlns=\"" NS "\">"
      "<Name>datasets</Name><Prefix>train/</Prefix>"
      "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="
      "</NextContinuationToken>"
      "<KeyCount>3</KeyCount><MaxKeys>3</MaxKeys>"
      "<EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>"
      "<Contents><Key>train/a%2Bb.jpg</Key>"
      "<LastModified>2009-10-12T17:50:30.000Z</LastModified>"
      "<ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag>"
      "<ChecksumAlgorithm>CRC32</ChecksumAlgorithm>"
      "<Size>434234</Size><StorageClass>STANDARD</StorageClass></Contents>"
      "<Contents><Key>train/big+file.bin</Key>"
      "<LastModified>2024-02-29T23:59:59.123Z</LastModified>"
      "<ETag>&quot;3858f62230ac3c915f300c664312c11f-9&quot;</ETag>"
      "<Size>18446744073709551615</Size>"
      "<Owner><ID>"
      "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a"
      "</ID><DisplayName>mtd</DisplayName></Owner>"
      "<StorageClass>STANDARD</StorageClass></Contents>"
      "<Contents><Key>train/empty</Key>"
      "<LastModified>1970-01-01T00:00:00.000Z</LastModified>"
      "<ETag>&quot;d41d8cd98f00b204e9800998ecf8427e&quot;</ETag>"
      "<Size>0</Size><StorageClass>STANDARD</StorageClass></Contents>"
      "</ListBucketResult>\n";

static void
test_aws_page (void **state)
{
  struct parsed p;

  parse (&p, aws_page);
  assert_int_equal (p.r, 0);
  assert_int_equal (p.l.n, 3);
  assert_int_equal (p.page.nkeys, 3);
  assert_true (p.page.truncated);
  /* Not decoded: '+' and '/' stay as they are. */
  assert_string_equal (p.page.next_token,
                       "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
  assert_int_equal (p.page.nprefixes, 0);

  assert_string_equal (p.l.objs[0].key, "train/a+b.jpg");
  assert_string_equal (p.l.objs[0].etag,
                       "\"fba9dede5f27731c9771645a39863328\"");
  assert_int_equal (p.l.objs[0].size, 434234);
  assert_int_equal (p.l.objs[0].mtime, 1255369830);
  assert_int_equal (p.l.objs[0].mtime_nsec, 0);

  assert_string_equal (p.l.objs[1].key, "train/big file.bin");
  assert_true (p.l.objs[1].size == UINT64_MAX);
  assert_int_equal (p.l.objs[1].mtime, 1709251199);
  assert_int_equal (p.l.objs[1].mtime_nsec, 123000000);
  assert_string_equal (p.l.objs[1].etag,
                       "\"3858f62230ac3c915f300c664312c11f-9\"");

  assert_string_equal (p.l.objs[2].key, "train/empty");
  assert_int_equal (p.l.objs[2].size, 0);
  assert_int_equal (p.l.objs[2].mtime, 0);
  parsed_free (&p);
}

/* As Swift's s3api writes it (lxml): single-quoted declaration, no
 * namespace prefix games, EncodingType after Contents, %20 for a space,
 * a base64 token.
 */
static const char swift_page[]
    = "<?xml version='1.0' encoding='UTF-8'?>\n"
      "<ListBucketResult xmlns=\"" NS "\"><Name>bucket</Name><Prefix/>"
      "<NextContinuationToken>ZGlyL3N1YmRpci8=</NextContinuationToken>"
      "<StartAfter>a%20b</StartAfter>"
      "<KeyCount>3</KeyCount><MaxKeys>3</MaxKeys><Delimiter>/</Delimiter>"
      "<IsTruncated>true</IsTruncated>"
      "<Contents><Key>a%20b</Key>"
      "<LastModified>2023-06-01T10:20:30.000Z</LastModified>"
      "<ETag>\"0cc175b9c0f1b6a831c399e269772661\"</ETag><Size>1</Size>"
      "<StorageClass>STANDARD</StorageClass></Contents>"
      "<Contents><Key>caf%C3%A9%2B%01%0A</Key>"
      "<LastModified>2023-06-01T10:20:31.000Z</LastModified>"
      "<ETag>\"92eb5ffee6ae2fec3ad71c777531578f-2\"</ETag><Size>2</Size>"
      "<StorageClass>STANDARD</StorageClass></Contents>"
      "<CommonPrefixes><Prefix>dir%20one/</Prefix></CommonPrefixes>"
      "<CommonPrefixes><Prefix>%E6%97%A5%E6%9C%AC/</Prefix></CommonPrefixes>"
      "<EncodingType>url</EncodingType></ListBucketResult>";

static void
test_swift_page (void **state)
{
  struct parsed p;

  parse (&p, swift_page);
  assert_int_equal (p.r, 0);
  assert_true (p.page.truncated);
  assert_string_equal (p.page.next_token, "ZGlyL3N1YmRpci8=");
  assert_int_equal (p.l.n, 2);
  assert_string_equal (p.l.objs[0].key, "a b");
  assert_string_equal (p.l.objs[0].etag,
                       "\"0cc175b9c0f1b6a831c399e269772661\"");
  assert_string_equal (p.l.objs[1].key, "caf\xc3\xa9+\x01\n");
  assert_int_equal (p.l.objs[1].size, 2);
  assert_int_equal (p.page.nprefixes, 2);
  assert_string_equal (p.page.prefixes[0], "dir one/");
  assert_string_equal (p.page.prefixes[1], "\xe6\x97\xa5\xe6\x9c\xac/");
  parsed_free (&p);
}

/* Without EncodingType nothing is decoded: '%' and '+' are literal. */
static void
test_not_encoded (void **state)
{
  struct parsed p;

  parse (&p, "<ListBucketResult><IsTruncated>false</IsTruncated>"
             "<Contents><Key> 100%2B+ &amp; &lt;x&gt; </Key><Size>7</Size>"
             "</Contents>"
             "<Contents><Key><![CDATA[cdata <key>]]></Key><Size>\n 8\t</Size>"
             "</Contents></ListBucketResult>");
  assert_int_equal (p.r, 0);
  assert_false (p.page.truncated);
  assert_null (p.page.next_token);
  assert_int_equal (p.l.n, 2);
  /* Spaces in a key are kept; no ETag gives "". */
  assert_string_equal (p.l.objs[0].key, " 100%2B+ & <x> ");
  assert_string_equal (p.l.objs[0].etag, "");
  assert_int_equal (p.l.objs[0].mtime, 0);
  assert_string_equal (p.l.objs[1].key, "cdata <key>");
  assert_int_equal (p.l.objs[1].size, 8);
  parsed_free (&p);
}

/* A namespace prefix instead of a default namespace. */
static void
test_prefixed_namespace (void **state)
{
  struct parsed p;

  parse (&p, "<s3:ListBucketResult xmlns:s3=\"" NS "\">"
             "<s3:IsTruncated>false</s3:IsTruncated><s3:Contents>"
             "<s3:Key>k</s3:Key><s3:Size>1</s3:Size></s3:Contents>"
             "</s3:ListBucketResult>");
  assert_int_equal (p.r, 0);
  assert_int_equal (p.l.n, 1);
  assert_string_equal (p.l.objs[0].key, "k");
  parsed_free (&p);
}

static void
test_common_prefixes_only (void **state)
{
  struct parsed p;

  parse (&p, "<ListBucketResult xmlns=\"" NS "\"><Name>b</Name>"
             "<Prefix>p/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys>"
             "<Delimiter>/</Delimiter><EncodingType>url</EncodingType>"
             "<IsTruncated>false</IsTruncated>"
             "<CommonPrefixes><Prefix>p/a+b/</Prefix></CommonPrefixes>"
             "<CommonPrefixes><Prefix>p/c%25d/</Prefix></CommonPrefixes>"
             "</ListBucketResult>");
  assert_int_equal (p.r, 0);
  assert_int_equal (p.l.n, 0);
  assert_int_equal (p.page.nkeys, 0);
  assert_int_equal (p.page.nprefixes, 2);
  assert_string_equal (p.page.prefixes[0], "p/a b/");
  assert_string_equal (p.page.prefixes[1], "p/c%d/");
  parsed_free (&p);
}

static void
test_empty_result (void **state)
{
  struct parsed p;

  parse (&p, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
             "<ListBucketResult xmlns=\"" NS "\"><Name>b</Name>"
             "<Prefix>nothing/</Prefix><KeyCount>0</KeyCount>"
             "<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>"
             "</ListBucketResult>");
  assert_int_equal (p.r, 0);
  assert_int_equal (p.l.n, 0);
  assert_false (p.page.truncated);
  assert_null (p.page.next_token);
  parsed_free (&p);
}

/* A second page appends to the first; a failed page leaves it alone. */
static void
test_pages_append (void **state)
{
  struct s3_listing l = { 0 };
  struct s3xml_list_page page;
  struct s3bd_error err = { 0 };
  static const char bad[]
      = "<ListBucketResult><IsTruncated>false</IsTruncated>"
        "<Contents><Key>x</Key><Size>1</Size></Contents>"
        "<Contents><Key>y</Key></Contents></ListBucketResult>";

  assert_int_equal (
      s3xml_parse_list (aws_page, strlen (aws_page), &l, &page, &err), 0);
  s3xml_list_page_free (&page);
  assert_int_equal (
      s3xml_parse_list (swift_page, strlen (swift_page), &l, &page, &err), 0);
  assert_int_equal (page.nkeys, 2);
  s3xml_list_page_free (&page);
  assert_int_equal (l.n, 5);
  assert_int_equal (s3xml_parse_list (bad, strlen (bad), &l, &page, &err), -1);
  assert_int_equal (l.n, 5);
  assert_string_equal (l.objs[4].key, "caf\xc3\xa9+\x01\n");
  s3_listing_free (&l);
}

static void
test_truncated_needs_token (void **state)
{
  assert_refused ("<ListBucketResult><IsTruncated>true</IsTruncated>"
                  "</ListBucketResult>",
                  "NextContinuationToken");
  assert_refused ("<ListBucketResult><IsTruncated>true</IsTruncated>"
                  "<NextContinuationToken></NextContinuationToken>"
                  "</ListBucketResult>",
                  "NextContinuationToken");
  assert_refused ("<ListBucketResult><Name>b</Name></ListBucketResult>",
                  "no <IsTruncated>");
  assert_refused ("<ListBucketResult><IsTruncated>yes</IsTruncated>"
                  "</ListBucketResult>",
                  "IsTruncated");
}

/* Every proper prefix of a page is an error, and frees what it took;
 * the page up to and after its root's end tag parses.
 */
static void
test_every_cut (void **state)
{
  const char *docs[] = { aws_page, swift_page };
  size_t d, len, end;

  for (d = 0; d < sizeof docs / sizeof *docs; d++)
    {
      const char *doc = docs[d];
      const char *root_end = strstr (doc, "</ListBucketResult>");

      assert_non_null (root_end);
      end = (size_t)(root_end - doc) + strlen ("</ListBucketResult>");
      for (len = 0; len <= strlen (doc); len++)
        {
          struct s3_listing l = { 0 };
          struct s3xml_list_page page;
          struct s3bd_error err = { 0 };
          int r = s3xml_parse_list (doc, len, &l, &page, &err);

          if (len < end)
            {
              if (r != -1 || err.code != S3BD_EPROTO)
                fail_msg ("doc %zu cut at %zu: r=%d", d, len, r);
              assert_int_equal (l.n, 0);
              assert_null (page.next_token);
              assert_null (page.prefixes);
            }
          else
            {
              assert_int_equal (r, 0);
              assert_true (page.truncated);
            }
          s3xml_list_page_free (&page);
          s3_listing_free (&l);
        }
    }
}

static void
test_cut_message (void **state)
{
  struct s3_listing l = { 0 };
  struct s3xml_list_page page;
  struct s3bd_error err = { 0 };

  assert_int_equal (s3xml_parse_list (aws_page, 300, &l, &page, &err), -1);
  assert_int_equal (err.code, S3BD_EPROTO);
  assert_non_null (strstr (err.msg, "line 2 column"));
  assert_non_null (strstr (err.msg, "(the response is truncated)"));
  assert_int_equal (s3xml_parse_list ("", 0, &l, &page, &err), -1);
  assert_non_null (strstr (err.msg, "empty body"));
  s3_listing_free (&l);
}

static void
test_malformed (void **state)
{
  assert_refused ("<ListBucketResult><IsTruncated>false</IsTruncated>"
                  "<Contents><Key>k</Size></Contents></ListBucketResult>",
                  "mismatched tag");
  assert_refused ("<ListBucketResult><IsTruncated>false</IsTruncated>"
                  "</ListBucketResult><extra/>",
                  "junk after document");
  assert_refused ("<ListBucketResult><IsTruncated>false</IsTruncated>"
                  "<Contents><Key>&undefined;</Key><Size>1</Size>"
                  "</Contents></ListBucketResult>",
                  "undefined entity");
  assert_refused ("not xml at all", "line 1 column 0");
  assert_refused ("<ListBucketResult><IsTruncated>false</IsTruncated>"
                  "<Contents><Key>a<b/></Key><Size>1</Size></Contents>"
                  "</ListBucketResult>",
                  "element <b> inside <Key>");
  assert_refused ("<ListBucketResult><IsTruncated>false</IsTruncated>"
                  "<Contents><Key>a</Key><Key>b</Key><Size>1</Size>"
                  "</Contents></ListBucketResult>",
                  "<Key> appears twice");
  assert_refused ("<ListBucketResult><EncodingType>base64</EncodingType>"
                  "<IsTruncated>false</IsTruncated></ListBucketResult>",
                  "unknown <EncodingType>");
  assert_refused ("<ListBucketResult><IsTruncated>false</IsTruncated>"
                  "<Contents><Key>k</Key><Size>1</Size><ETag>\""
                  "0123456789012345678901234567890123456789"
                  "0123456789012345678901234567890123456789\"</ETag>"
                  "</Contents></ListBucketResult>",
                  "<ETag> longer than 79 bytes");
  assert_refused ("<ListBucketResult><IsTruncated>false</IsTruncated>"
                  "<a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a>"
                  "</a></a></a></a></a></a></a></a></a></a></a></a></a></a>"
                  "</a></a></ListBucketResult>",
                  "nested more than 16 deep");
}

static void
test_wrong_root (void **state)
{
  assert_refused ("<ListAllMyBucketsResult xmlns=\"" NS "\"><Buckets/>"
                  "</ListAllMyBucketsResult>",
                  "root element is <ListAllMyBucketsResult>");
  assert_refused ("<Error><Code>NoSuchBucket</Code></Error>",
                  "root element is <Error>");
}

static void
test_bad_size (void **state)
{
  static const char *const sizes[] = {
    "",
    "-1",
    "+1",
    "12abc",
    "1 2",
    "0x10",
    "18446744073709551616",
    "99999999999999999999999",
    "1.5",
    "\xc2\xb2",
  };
  size_t i;

  for (i = 0; i < sizeof sizes / sizeof *sizes; i++)
    {
      char xml[512];

      snprintf (xml, sizeof xml,
                "<ListBucketResult><IsTruncated>false</IsTruncated>"
                "<Contents><Key>k</Key><Size>%s</Size></Contents>"
                "</ListBucketResult>",
                sizes[i]);
      assert_refused (xml, "<Size> is");
    }
  assert_refused ("<ListBucketResult><IsTruncated>false</IsTruncated>"
                  "<Contents><Key>k</Key><Size>1</Size>"
                  "<LastModified>yesterday</LastModified></Contents>"
                  "</ListBucketResult>",
                  "<LastModified> is \"yesterday\"");
}

static void
test_missing_fields (void **state)
{
  assert_refused ("<ListBucketResult><IsTruncated>false</IsTruncated>"
                  "<Contents><Size>1</Size><ETag>\"x\"</ETag></Contents>"
                  "</ListBucketResult>",
                  "<Contents> without <Key>");
  assert_refused ("<ListBucketResult><IsTruncated>false</IsTruncated>"
                  "<Contents><Key>k</Key></Contents></ListBucketResult>",
                  "<Contents> without <Size>");
  assert_refused ("<ListBucketResult><IsTruncated>false</IsTruncated>"
                  "<Contents><Key></Key><Size>1</Size></Contents>"
                  "</ListBucketResult>",
                  "key 1 of the page is empty");
  assert_refused ("<ListBucketResult><IsTruncated>false</IsTruncated>"
                  "<Contents><Key>a%00b</Key><Size>1</Size></Contents>"
                  "<EncodingType>url</EncodingType></ListBucketResult>",
                  "NUL byte");
  assert_refused ("<ListBucketResult><IsTruncated>false</IsTruncated>"
                  "<Contents><Key>a%zzb</Key><Size>1</Size></Contents>"
                  "<EncodingType>url</EncodingType></ListBucketResult>",
                  "malformed %-escape");
}

static void
test_doctype_refused (void **state)
{
  assert_refused ("<?xml version=\"1.0\"?>\n"
                  "<!DOCTYPE lolz [\n"
                  " <!ENTITY lol \"lol\">\n"
                  " <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
                  " <!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">\n"
                  " <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n"
                  "]>\n"
                  "<ListBucketResult><IsTruncated>false</IsTruncated>"
                  "<Contents><Key>&lol3;</Key><Size>1</Size></Contents>"
                  "</ListBucketResult>",
                  "line 2 column 15: DOCTYPE");
  assert_refused ("<?xml version=\"1.0\"?>\n"
                  "<!DOCTYPE x [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>"
                  "<ListBucketResult><IsTruncated>false</IsTruncated>"
                  "<Contents><Key>&xxe;</Key><Size>1</Size></Contents>"
                  "</ListBucketResult>",
                  "DOCTYPE not allowed");
}

/* Builds a page with one key of n bytes of 'k', url-encoded (each byte
 * as %6B) or written plainly.
 */
static char *
page_with_key (size_t n, bool encoded)
{
  const char *head = encoded
                         ? "<ListBucketResult><EncodingType>url</EncodingType>"
                           "<IsTruncated>false</IsTruncated><Contents><Key>"
                         : "<ListBucketResult><IsTruncated>false</"
                           "IsTruncated><Contents><Key>";
  static const char tail[] = "</Key><Size>1</Size></Contents>"
                             "</ListBucketResult>";
  size_t i, off = strlen (head);
  char *xml = malloc (off + 3 * n + sizeof tail);

  assert_non_null (xml);
  memcpy (xml, head, off);
  for (i = 0; i < n; i++)
    if (encoded)
      {
        memcpy (xml + off, "%6B", 3);
        off += 3;
      }
    else
      xml[off++] = 'k';
  memcpy (xml + off, tail, sizeof tail);
  return xml;
}

static void
test_key_length_limit (void **state)
{
  bool encoded;

  for (encoded = false;; encoded = true)
    {
      struct parsed p;
      char *xml = page_with_key (1024, encoded);

      parse (&p, xml);
      assert_int_equal (p.r, 0);
      assert_int_equal (strlen (p.l.objs[0].key), 1024);
      assert_int_equal (p.l.objs[0].key[1023], 'k');
      parsed_free (&p);
      free (xml);

      xml = page_with_key (1025, encoded);
      assert_refused (xml, encoded
                               ? "<Key> longer than 3072 bytes"
                               : "1025 bytes long, over S3's limit of 1024");
      free (xml);
      if (encoded)
        break;
    }
}

static char code[64], message[256];

static int
parse_error (const char *xml)
{
  return s3xml_parse_error (xml, strlen (xml), code, sizeof code, message,
                            sizeof message);
}

static void
test_error_documents (void **state)
{
  static const char nosuchkey[]
      = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<Error><Code>NoSuchKey</Code>"
        "<Message>The resource you requested does not exist</Message>"
        "<Resource>/mybucket/myfoto.jpg</Resource>"
        "<RequestId>4442587FB7D0A2F9</RequestId></Error>";
  static const char signature[]
      = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<Error>\n  <Code>SignatureDoesNotMatch</Code>\n"
        "  <Message>The request signature we calculated does not match the "
        "signature you provided. Check your key and signing method.</Message>\n"
        "  <AWSAccessKeyId>AKIAIOSFODNN7EXAMPLE</AWSAccessKeyId>\n"
        "  <StringToSign>AWS4-HMAC-SHA256\n20130524T000000Z</StringToSign>\n"
        "</Error>\n";

  assert_int_equal (parse_error (nosuchkey), 0);
  assert_string_equal (code, "NoSuchKey");
  assert_string_equal (message, "The resource you requested does not exist");

  assert_int_equal (parse_error (signature), 0);
  assert_string_equal (code, "SignatureDoesNotMatch");
  assert_non_null (strstr (message, "does not match the signature"));

  /* Cut to the buffer; control characters become spaces. */
  assert_int_equal (
      s3xml_parse_error (signature, strlen (signature), code, 7, message, 4),
      0);
  assert_string_equal (code, "Signat");
  assert_string_equal (message, "The");
  assert_int_equal (
      s3xml_parse_error (signature, strlen (signature), NULL, 0, NULL, 0), 0);
  assert_int_equal (parse_error ("<Error><Code>Slow\tDown</Code></Error>"), 0);
  assert_string_equal (code, "Slow Down");
  assert_string_equal (message, "");
  /* Empty, and the first of two. */
  assert_int_equal (parse_error ("<Error><Code/><Message>m1</Message>"
                                 "<Message>m2</Message></Error>"),
                    0);
  assert_string_equal (code, "");
  assert_string_equal (message, "m1");

  /* Namespaced, as some servers send it. */
  assert_int_equal (parse_error ("<Error xmlns=\"" NS "\"><Code>X</Code>"
                                 "</Error>"),
                    0);
  assert_string_equal (code, "X");

  /* Not an error document. */
  assert_int_equal (parse_error ("<html><body>502 Bad Gateway</body>"
                                 "</html>"),
                    -1);
  assert_string_equal (code, "");
  assert_string_equal (message, "");
  assert_int_equal (parse_error ("Service Unavailable"), -1);
  assert_int_equal (parse_error (""), -1);
  assert_int_equal (s3xml_parse_error (nosuchkey, 60, code, sizeof code,
                                       message, sizeof message),
                    -1);
  assert_int_equal (parse_error ("<Error><Code>A</Code></Error><junk/>"), -1);
  assert_int_equal (parse_error ("<!DOCTYPE e [<!ENTITY a \"b\">]>"
                                 "<Error><Code>&a;</Code></Error>"),
                    -1);
}

/* Copies v into s, which the tests size for it. */
static size_t
set (char *s, size_t size, const char *v)
{
  int n = snprintf (s, size, "%s", v);

  assert_true (n >= 0 && (size_t)n < size);
  return (size_t)n;
}

static void
test_url_decode (void **state)
{
  char s[64];
  size_t len;

  len = set (s, sizeof s, "a%20b+c%2Bd%e6%97%A5");
  assert_int_equal (s3xml_url_decode (s, &len, true), 0);
  assert_int_equal (len, 10);
  assert_string_equal (s, "a b c+d\xe6\x97\xa5");

  len = set (s, sizeof s, "a+b%2b");
  assert_int_equal (s3xml_url_decode (s, &len, false), 0);
  assert_int_equal (len, 4);
  assert_string_equal (s, "a+b+");

  len = set (s, sizeof s, "plain");
  assert_int_equal (s3xml_url_decode (s, &len, true), 0);
  assert_int_equal (len, 5);
  assert_string_equal (s, "plain");

  /* %00 decodes; the length says where the string ends. */
  len = set (s, sizeof s, "x%00y");
  assert_int_equal (s3xml_url_decode (s, &len, true), 0);
  assert_int_equal (len, 3);
  assert_memory_equal (s, "x\0y", 3);

  {
    static const char *const bad[] = { "%", "a%4", "%zz", "%4g", "ok%" };
    size_t i;

    for (i = 0; i < sizeof bad / sizeof *bad; i++)
      {
        len = set (s, sizeof s, bad[i]);
        assert_int_equal (s3xml_url_decode (s, &len, true), -1);
        assert_string_equal (s, bad[i]);
        assert_int_equal (len, strlen (bad[i]));
      }
  }
}

/* ---- The listing ---- */

static void
test_listing_many (void **state)
{
  struct s3_listing l = { 0 };
  const size_t n = 300000;
  char key[64], etag[40];
  size_t i;

  for (i = 0; i < n; i++)
    {
      /* Descending order, so that the sort has work to do. */
      int klen = snprintf (key, sizeof key, "dir/%08zu.jpg", n - 1 - i);

      snprintf (etag, sizeof etag, "\"%032zx\"", i);
      assert_int_equal (s3_listing_add (&l, key, (size_t)klen, etag, i,
                                        (int64_t)i, (uint32_t)i),
                        0);
    }
  /* One key longer than a quarter arena block goes in too. */
  {
    size_t big = 200 * 1024;
    char *k = malloc (big);

    assert_non_null (k);
    memset (k, 'z', big);
    assert_int_equal (s3_listing_add (&l, k, big, NULL, 1, 0, 0), 0);
    free (k);
  }
  assert_int_equal (l.n, n + 1);
  assert_true (l.cap >= l.n);

  s3_listing_sort (&l);
  for (i = 0; i < n; i++)
    {
      snprintf (key, sizeof key, "dir/%08zu.jpg", i);
      snprintf (etag, sizeof etag, "\"%032zx\"", n - 1 - i);
      assert_string_equal (l.objs[i].key, key);
      assert_string_equal (l.objs[i].etag, etag);
      assert_int_equal (l.objs[i].size, n - 1 - i);
    }
  assert_int_equal (strlen (l.objs[n].key), 200 * 1024);
  assert_string_equal (l.objs[n].etag, "");

  s3_listing_free (&l);
  assert_null (l.objs);
  assert_int_equal (l.n, 0);
  /* Freed twice, or never filled: nothing happens. */
  s3_listing_free (&l);
}

static void
test_listing_byte_order (void **state)
{
  /* Byte order: ' ' (0x20) < '+' (0x2b) < '/' (0x2f) < 'A' < 'a' < any
   * multi-byte UTF-8 (lead byte >= 0xc2), and a prefix sorts first.
   */
  static const char *const sorted[] = {
    "a",
    "a b",
    "a+b",
    "a/b",
    "a/b/c",
    "aB",
    "ab",
    "a\x7f",
    "a\xc3\xa9",         /* a-acute: U+00E9 */
    "a\xe6\x97\xa5",     /* U+65E5 */
    "a\xf0\x9f\x98\x80", /* U+1F600 */
  };
  static const size_t order[] = { 7, 2, 10, 0, 5, 9, 3, 1, 8, 4, 6 };
  const size_t n = sizeof sorted / sizeof *sorted;
  struct s3_listing l = { 0 };
  size_t i;

  for (i = 0; i < n; i++)
    {
      const char *k = sorted[order[i]];

      assert_int_equal (s3_listing_add (&l, k, strlen (k), "\"e\"", i, 0, 0),
                        0);
    }
  s3_listing_sort (&l);
  for (i = 0; i < n; i++)
    assert_string_equal (l.objs[i].key, sorted[i]);
  s3_listing_free (&l);

  /* Sorting nothing, or one, is fine. */
  s3_listing_sort (&l);
  assert_int_equal (s3_listing_add (&l, "k", 1, "", 0, 0, 0), 0);
  s3_listing_sort (&l);
  assert_string_equal (l.objs[0].key, "k");
  s3_listing_free (&l);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_aws_page),
    cmocka_unit_test (test_swift_page),
    cmocka_unit_test (test_not_encoded),
    cmocka_unit_test (test_prefixed_namespace),
    cmocka_unit_test (test_common_prefixes_only),
    cmocka_unit_test (test_empty_result),
    cmocka_unit_test (test_pages_append),
    cmocka_unit_test (test_truncated_needs_token),
    cmocka_unit_test (test_every_cut),
    cmocka_unit_test (test_cut_message),
    cmocka_unit_test (test_malformed),
    cmocka_unit_test (test_wrong_root),
    cmocka_unit_test (test_bad_size),
    cmocka_unit_test (test_missing_fields),
    cmocka_unit_test (test_doctype_refused),
    cmocka_unit_test (test_key_length_limit),
    cmocka_unit_test (test_error_documents),
    cmocka_unit_test (test_url_decode),
    cmocka_unit_test (test_listing_many),
    cmocka_unit_test (test_listing_byte_order),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
