#!/usr/bin/env bash
# scripts/copy-sources.sh REPO DEST - copies mod_msm's sources from REPO into DEST
# (which must exist) for an out-of-tree build: git's tracked and untracked-not-
# ignored files when REPO is a git work tree, else every file; build outputs of an
# in-tree build (objects, libtool wrappers, configure's products, Apache::Test's
# generated files) are left out either way. Used by scripts/test.sh,
# scripts/deb-test.sh and bench/run.sh.
set -u -o pipefail
REPO=${1:?usage: copy-sources.sh REPO DEST}
DEST=${2:?usage: copy-sources.sh REPO DEST}

list_files() {
    if command -v git >/dev/null 2>&1 \
       && git -c safe.directory='*' -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git -c safe.directory='*' -C "$REPO" ls-files -z --cached --others --exclude-standard
    else
        (cd "$REPO" && find . -name .git -prune -o \( -type f -o -type l \) -print0 | sed -z 's|^\./||')
    fi
}

list_files | (cd "$REPO" && perl -0ne '
    chomp; my $f = $_;
    next if $f eq "" || !(-e $f || -l $f);     # a tracked file deleted in the work tree
    next if $f =~ m{(^|/)\.git/};
    next if $f =~ m{(^|/)(\.libs|\.deps|autom4te\.cache)/};
    next if $f =~ m{\.(o|lo|la|a|so)$};
    next if $f =~ m{^t/(TEST|conf/(httpd\.conf|extra\.conf|base\.conf|apache_test_config\.pm))$};
    next if $f =~ m{^t/(logs|tmp|conf/ssl)/};
    (my $dir = $f) =~ s{[^/]*$}{};
    my $base = substr($f, length $dir);
    next if $base =~ /^(config\.status|config\.log|libtool|stamp-h\d*|config\.h)$/;
    next if $base eq "Makefile"    && -e "${dir}Makefile.am";
    next if $base eq "Makefile.in" && -e "${dir}Makefile.am";
    next if $base eq "configure"   && -e "${dir}configure.ac";
    next if $base eq "aclocal.m4"  && -e "${dir}configure.ac";
    # binaries and libtool wrapper scripts of an in-tree build
    if (-f $f && !-l $f && open(my $fh, "<", $f)) {
        read($fh, my $head, 512); close $fh;
        next if defined $head && ($head =~ /^\x7fELF/ || $head =~ /temporary wrapper script for/);
    }
    print "$f\0";
') | tar -C "$REPO" --null -T - -cf - | tar -C "$DEST" -xf -
