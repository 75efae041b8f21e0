#!/usr/bin/env bash
# scripts/check-version.sh - fails when the version in configure.ac's AC_INIT and
# the newest version in debian/changelog disagree.
#
#   bash scripts/check-version.sh [SOURCE_DIR]     (default: the repository)
#
# The package is native (debian/source/format "3.0 (native)"), so the versions
# must be equal; should it ever get a Debian revision (0.1.0-1) or an epoch,
# only the upstream part is compared. Exit 0 when they agree, 1 otherwise.
set -u -o pipefail

DIR=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
AC=$DIR/configure.ac
CL=$DIR/debian/changelog

for f in "$AC" "$CL"; do
    [ -f "$f" ] || { echo "check-version: $f not found" >&2; exit 1; }
done

# AC_INIT([mod_msm], [0.1.0], ...)  (brackets optional)
ac_version=$(sed -n 's/^[[:space:]]*AC_INIT([^,]*,[[:space:]]*\[\{0,1\}\([^],)]*\)\]\{0,1\}.*/\1/p' "$AC" | head -n 1)
# first line: "libapache2-mod-msm (0.1.0) unstable; urgency=medium"
if command -v dpkg-parsechangelog >/dev/null 2>&1; then
    deb_version=$(dpkg-parsechangelog -l "$CL" -S Version 2>/dev/null)
else
    deb_version=$(sed -n '1s/^[^ ]* (\([^)]*\)).*/\1/p' "$CL")
fi
upstream=${deb_version#*:}            # no epoch
case "$upstream" in *-*) upstream=${upstream%-*} ;; esac   # no Debian revision

if [ -z "$ac_version" ] || [ -z "$deb_version" ]; then
    echo "check-version: could not read a version (configure.ac: '$ac_version', debian/changelog: '$deb_version')" >&2
    exit 1
fi
if [ "$ac_version" != "$upstream" ]; then
    echo "check-version: configure.ac says $ac_version but debian/changelog says $deb_version" >&2
    echo "check-version: add a debian/changelog entry (dch -v $ac_version) or fix AC_INIT" >&2
    exit 1
fi
echo "check-version: $ac_version (configure.ac) = $deb_version (debian/changelog)"
