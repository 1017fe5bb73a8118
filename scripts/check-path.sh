#!/bin/sh
# check-path.sh [DIR]: can upstream CRIU's make build in DIR (default: this
# checkout)? Its top Makefile puts the tree's absolute path into include
# lines, pattern rules and unquoted shell commands (__nmk_dir=$(CURDIR)/...),
# so a space, a shell or make special character (: % $ # ' " ( ; & ...)
# there breaks the build deep inside (a space: "Makefile.config:2: ...
# msg.mk: No such file or directory"). Prints nothing and exits 0 when the
# (physical) path has only letters, digits, non-ASCII and / . _ - + @ , = ~;
# otherwise prints one line naming the path and exits 1. The Makefile runs
# it before anything else.
set -u
dir=$(cd "${1:-$(dirname "$0")/..}" && pwd -P) || exit 1
bad=$(printf '%s' "$dir" | LC_ALL=C tr -d 'A-Za-z0-9/._+@,=~\200-\377-')
[ -z "$bad" ] && exit 0
case $bad in
*' '*) what="a space" ;;
*"$(printf '\t')"*) what="a tab" ;;
*'
'*) what="a newline" ;;
\'*) what="\"'\"" ;;
*) what="'$(printf '%s' "$bad" | cut -c1)'" ;;
esac
printf '%s\n' "the checkout is at \"$dir\": upstream CRIU's make cannot build in a path with $what; clone the project elsewhere (a path of letters, digits and / . _ - + only)"
exit 1
