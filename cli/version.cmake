# Writes the installed copy of a shell command (cli/CMakeLists.txt): the
# source with the project's version in place of @S3BD_VERSION@, which is
# how the copy knows it is not the clone's.
#
#   cmake -DIN=SCRIPT -DOUT=COPY -DVERSION=V -P version.cmake
file (READ "${IN}" text)
string (REPLACE "@S3BD_VERSION@" "${VERSION}" text "${text}")
file (WRITE "${OUT}" "${text}")
