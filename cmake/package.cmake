# The Debian package: "cpack -G DEB" in the build directory writes
# s3bd_VERSION_ARCH.deb with everything cmake --install puts, under
# prefix /usr, and the plugin in nbdkit's plugin directory (absolute, so
# staged with DESTDIR: CPACK_SET_DESTDIR).
#
# It does not depend on Debian's nbdkit package: Debian 12's (1.32.5)
# aborts the whole server when a client hangs up with reads in flight,
# fixed in 1.33.10, and s3bd-attach refuses it.  scripts/install-nbdkit
# builds a fixed nbdkit into /usr/local, whose plugin directory
# (/usr/local/lib/nbdkit/plugins) the plugin goes to.
set (CPACK_GENERATOR DEB)
set (CPACK_PACKAGE_NAME s3bd)
set (CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set (CPACK_PACKAGE_CONTACT "s3bd maintainers <s3bd@localhost>")
set (CPACK_PACKAGE_DESCRIPTION_SUMMARY
     "S3 prefix as a read-only ext4 block device (nbdkit plugin)")
# CPack puts the summary first and indents these lines itself.
set (CPACK_DEBIAN_PACKAGE_DESCRIPTION
"s3bd serves the objects under an S3 prefix as the files of a read-only
ext4 file system on an NBD block device: nbdkit-s3bd-plugin, the s3bd
command (s3bd mount s3://BUCKET/PREFIX/ DIR, umount, status, preload,
pipe), mount.s3bd for mount -t s3bd and fstab, the s3bd@.service unit,
s3bd-mkimage, s3bd-preload and s3bd-s3, with their man pages.

It needs nbdkit 1.33.10 or later, and does not depend on Debian's
nbdkit package: Debian 12's nbdkit (1.32.5) aborts the whole server when
a client hangs up with reads in flight.  Build a fixed one into
/usr/local with s3bd's scripts/install-nbdkit; the plugin is installed
in its plugin directory, ${S3BD_NBDKIT_PLUGINDIR}.")
set (CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set (CPACK_DEBIAN_PACKAGE_SECTION admin)
set (CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# The libraries the programs and the plugin link, from dpkg-shlibdeps.
set (CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# What the shell commands run: jq (s3bd), losetup and mountpoint
# (util-linux), mount; an attach method: nbdfuse (with FUSE) or nbd-client.
set (CPACK_DEBIAN_PACKAGE_DEPENDS "jq, util-linux, mount, libnbd-bin | nbd-client")
set (CPACK_DEBIAN_PACKAGE_RECOMMENDS "fuse3, libnbd-bin")
set (CPACK_DEBIAN_PACKAGE_SUGGESTS "nbd-client, e2fsprogs")
set (CPACK_PACKAGING_INSTALL_PREFIX /usr)
# With DESTDIR staging, this is the prefix cpack installs with.
set (CPACK_INSTALL_PREFIX /usr)
set (CPACK_SET_DESTDIR ON)
set (CPACK_STRIP_FILES ON)
include (CPack)
