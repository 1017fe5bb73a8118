#!/bin/sh
# cover-letter.sh DIR: write DIR/0000-cover-letter.patch, the cover letter
# of the series that scripts/export-series.sh wrote into DIR, in git
# format-patch's cover letter layout: "[PATCH 0/N]", what the series
# does, why in CRIU and not an action script (the table of README.md's
# section "Why an option and not an action script", from a real run of
# "make bench-action-script"), how it was tested, what is left out on
# purpose, then the shortlog and diffstat of DIR's patches.
# From: is the exporter's git identity (git config user.name/email), as
# for the patches; without one it is left for the sender to fill in.
set -eu

cd "$(dirname "$0")/.."
die() { echo "cover-letter: $*" >&2; exit 1; }
[ $# = 1 ] || die "usage: scripts/cover-letter.sh DIR"
DIR=$1
# format-patch's names: no spaces, so a plain word list is enough.
PATCHES=
for p in "$DIR"/[0-9][0-9][0-9][0-9]-*.patch; do
	case $p in */0000-*) ;; *) [ -f "$p" ] && PATCHES="$PATCHES $p" ;; esac
done
[ -n "$PATCHES" ] || die "no patches in $DIR"
# shellcheck disable=SC2086
N=$(set -- $PATCHES && echo $#)
SECTION="## Why an option and not an action script"
grep -qx "$SECTION" README.md || die "README.md has no section \"$SECTION\""

# The section's command and table, as the README shows them.
readme_part() {
	awk -v sec="$SECTION" '
		$0 == sec { in_sec = 1; next }
		in_sec && /^## / { exit }
		in_sec { print }' README.md
}
TABLE=$(readme_part | grep '^|')
CMD=$(readme_part | grep '^    ' | grep -A1 'make bench-action-script$' | sed 's/^    //')
[ -n "$TABLE" ] || die "no table in README.md's section \"$SECTION\""

NAME=$(git config user.name || true)
EMAIL=$(git config user.email || true)
if [ -n "$NAME" ] && [ -n "$EMAIL" ]; then
	FROM="$NAME <$EMAIL>"
else
	FROM="YOUR NAME <YOUR EMAIL>"
	echo "cover-letter: no git user.name/user.email: fill in From: in $DIR/0000-cover-letter.patch" >&2
fi
# shellcheck source=scripts/upstream.conf
VERSION=$(. scripts/upstream.conf && echo "$VERSION")

# Subjects of the patches, unfolded, without "[PATCH i/N] ".
subjects() {
	for p in $PATCHES; do
		awk '/^Subject: / { s = $0; getline; while (/^ /) { s = s $0; getline }
			sub(/^Subject: (\[[^]]*\] )?/, "", s); print "  " s; exit }' "$p"
	done
}
authors() {
	for p in $PATCHES; do
		awk '/^From: / { sub(/^From: /, ""); sub(/ <.*/, ""); print; exit }' "$p"
	done | sort | uniq -c | awk '{ n = $1; $1 = ""; sub(/^ /, ""); printf "%s (%d):\n", $0, n }'
}

# The other series exported beside DIR (export-series.sh: DIR/../NAME/):
# fixes that do not need --tmp-file, sent on their own.
others() {
	top=$(cd "$DIR/.." && pwd)
	me=$(cd "$DIR" && pwd)
	first=1
	for d in "$top"/*/; do
		d=${d%/}
		[ "$d" != "$me" ] || continue
		for p in "$d"/[0-9][0-9][0-9][0-9]-*.patch; do
			[ -f "$p" ] || continue
			case $p in */0000-*) continue ;; esac
			if [ -n "$first" ]; then
				echo "- Fixes found on the way that do not need --tmp-file, sent as"
				echo "  series of their own:"
				first=
			fi
			awk '/^Subject: / { s = $0; getline; while (/^ /) { s = s $0; getline }
				sub(/^Subject: (\[[^]]*\] )?/, "", s); print "  " s; exit }' "$p" |
				sed 's/^  /    /'
		done
	done
}

# The series' diffstat: every file once, its lines summed over the patches.
diffstat() {
	# shellcheck disable=SC2086
	cat $PATCHES | git apply --numstat | awk '
		!($3 in add) { order[n++] = $3; if (length($3) > w) w = length($3) }
		{ add[$3] += $1; del[$3] += $2; ta += $1; td += $2 }
		END {
			for (i = 0; i < n; i++) {
				f = order[i]; c = add[f] + del[f]; if (c > max) max = c
			}
			for (i = 0; i < n; i++) {
				f = order[i]; a = add[f]; d = del[f]
				if (max > 50) {
					a = int(a * 50 / max + 0.5); d = int(d * 50 / max + 0.5)
					if (add[f] && !a) a = 1; if (del[f] && !d) d = 1
				}
				bar = ""; for (j = 0; j < a; j++) bar = bar "+"; for (j = 0; j < d; j++) bar = bar "-"
				printf " %-*s | %5d %s\n", w, f, add[f] + del[f], bar
			}
			printf " %d files changed, %d insertions(+), %d deletions(-)\n", n, ta, td
		}'
}

OUT=$DIR/0000-cover-letter.patch
{
	echo "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001"
	echo "From: $FROM"
	echo "Date: $(LC_ALL=C date -R)"
	echo "Subject: [PATCH 0/$N] criu: --tmp-file: save named files into the images, put them back at restore"
	echo
	cat <<TEXT
CRIU saves a regular file that a process has open only by its path. If
the file is gone at restore (a /tmp wiped at boot, a migration target
that never had it), restore fails:

  Error (criu/files-reg.c:...): Can't open file tmp/x/log on restore: No such file or directory

This is issue #65. The series adds

  criu dump --tmp-file PATH [--tmp-file-compress gzip|zstd|none]
            [--tmp-file-auto [--tmp-file-limit SIZE]] [--tmp-file-precopy]
            [--tmp-file-optional PATH]

PATH (a file, a directory with its content, or a symlink; repeatable) is
archived into the images while the tree is frozen, with a manifest
(type, mode, owner, size, content checksum, xattrs of every entry); at
restore it is checked against the manifest and put back before the tree
is rebuilt. Paths are the dumped tree's own (its root and mount
namespace), at dump and at restore. The options work on the command
line, in configuration files (so runc's runc.conf and org.criu.config),
over RPC and in libcriu; crit says what the new images are; zdtm has
tests for them; Documentation/tmp-file.txt describes the behaviour.

Why in CRIU and not an action script
------------------------------------

Upstream's answer to #65 is scripts/tmp-files.sh. Run next to
--tmp-file on the same workloads, in one run ("make
bench-action-script" of the project that develops this series;
"quoting fixed" is the script with the separate one-patch fix
"scripts/tmp-files.sh: pass tar options as words" applied):

$(echo "$CMD" | sed 's/^/  $ /;2,$s/^  \$ /  /')

$(echo "$TABLE" | sed 's/^/  /')

In short: as shipped the script cannot run (tar gets all its options
as one word and exits 64; the usage line's "script.sh /tmp/x" is
exec'ed as one file name). Fixed, it works for a plain process only:
it runs in criu's own mount namespace and root, so for a container or a
chroot it saves the host's file at that path and writes it back over
the host's at restore; it tars while the tree is frozen (3 to 4 s more
for 128 MiB here, against about 0.1 s for --tmp-file and a few ms with
--tmp-file-precopy); and it extracts as root with --absolute-names
through a symlink a local user planted in /tmp. runc reaches it only
through a wrapper in a criu configuration file that carries host paths
(the container's /data fails), and its user then reads "criu failed:
type NOTIFY errno 0". Doing it in CRIU
gives the tree's paths, the freeze accounting, the checks, and the
error in cr_errmsg and the log.

How the series is ordered
-------------------------

The new code is in modules that each call only the ones added before
them, one commit each with its obj-y line, so that every commit builds
and no two modules call each other: criu/tmp-files-tree.c (paths, the
walk, openat2() beneath a root), -hash.c (XXH64, xattrs), -tar.c (GNU
tar's command lines and runs, the ustar and pax parsers, the checked
stream), tmp-files.c (the options), -manifest.c, -stage.c, -place.c,
-auto.c, -precopy.c, then -dump.c and -restore.c with the hooks in
cr-dump.c and cr-restore.c. Upstream files get only calls into them,
and one flag: CRS_EXIT_STATUS has cr_system() return the exit status
(GNU tar's 1, "a file changed as we read it", is no error for the pass
before the freeze).

How it was tested
-----------------

On Debian 12, kernel 6.18, x86-64, against CRIU $VERSION:
- zdtm: the new tests tmp_file00..04 in the h, ns and uns flavors, and
  upstream's own tests against the patched build as a regression guard;
- each commit of the series builds on its own on the pristine release;
- end-to-end tests with the real criu binary and real processes: the
  #65 case, mount namespaces and --root, chroot, runc and podman
  checkpoint/restore, RPC, libcriu and pycriu, hostile images, a real
  unprivileged user racing the restore in the sticky /tmp, hostile
  trees during the pre-copy, fault injection, migration to a second
  host;
- frozen-time benchmarks against a plain copy and an unpatched build.

Left out on purpose
-------------------

- Device nodes in a saved directory fail the dump (restore would make
  them as root); sockets are refused by name.
- A file changed while tar reads it by a process outside the frozen
  tree fails the dump instead of saving a torn copy.
- Nothing is extracted by name through a directory another user can
  change: such a restore is refused, naming the directory and its owner.
- scripts/tmp-files.sh stays as it is, apart from the quoting fix sent
  on its own ("scripts/tmp-files.sh: pass tar options as words"); it is
  not removed here.
TEXT
	others
	echo
	authors
	subjects
	echo
	diffstat
	echo
	echo "-- "
	git --version | sed 's/^git version //'
	echo
} > "$OUT"
echo "cover-letter: $OUT ($N patches)"
