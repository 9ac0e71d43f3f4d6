# Writes one man page with pandoc, at build time (docs/CMakeLists.txt):
#
#   cmake -DPANDOC=pandoc -DIN=SOURCE -DOUT=PAGE -DNAME=N -DSECTION=S
#         -DDESC=TEXT -DVERSION=V -P man.cmake
#
# SOURCE is a page of docs/ (Markdown) or a shell command, whose leading
# comment block is its help.  A page with its own "# NAME" section
# (docs/s3bd.md) is taken as it is, its level-1 headings the sections;
# any other gets NAME (from DESC) and DESCRIPTION sections before its
# text, its own title dropped and its level-2 headings made the
# sections.  No date in the page: the same sources give the same bytes.
file (READ "${IN}" text)
set (shift 0)
if (IN MATCHES "\\.md$")
  # A pandoc title block (% lines) and a first "# Title" line go: the
  # page's title is NAME(SECTION).
  string (REGEX REPLACE "^(%[^\n]*\n)+" "" text "${text}")
  if (NOT text MATCHES "(^|\n)# NAME\n")
    string (REGEX REPLACE "^[ \n]*# [^\n]*\n" "" text "${text}")
    set (text "## NAME\n\n${NAME} - ${DESC}\n\n## DESCRIPTION\n\n${text}")
    set (shift -1)
  endif ()
else ()
  # A command's help: its comment block after the #! line.
  string (REGEX REPLACE "^#![^\n]*\n" "" text "${text}")
  string (REGEX MATCH "^(#[^\n]*\n)+" text "${text}")
  string (REGEX REPLACE "(^|\n)# ?" "\\1" text "${text}")
  set (text "# NAME\n\n${NAME} - ${DESC}\n\n# DESCRIPTION\n\n```\n${text}```\n\n"
            "# SEE ALSO\n\ns3bd(1), nbdkit-s3bd-plugin(1), s3bd-mkimage(1)\n")
endif ()
file (WRITE "${OUT}.md" "${text}")
execute_process (
  COMMAND "${PANDOC}" --standalone --from markdown --to man
          --shift-heading-level-by=${shift}
          -M "title=${NAME}" -M "section=${SECTION}" -M "header=s3bd"
          -M "footer=s3bd ${VERSION}" -M "date="
          -o "${OUT}" "${OUT}.md"
  RESULT_VARIABLE rc)
if (NOT rc EQUAL 0)
  message (FATAL_ERROR "pandoc failed on ${IN} (${rc})")
endif ()
