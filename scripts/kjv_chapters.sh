#!/bin/sh
# kjv_chapters.sh KJV.txt DIR - cut the King James text (`bible gen1:1-rev22:21`) into its 1189
# chapters, DIR/0001.txt ... DIR/1189.txt, one document each for `ksa prepare`: a chapter
# starts at a heading line ("Genesis 1", "1 Samuel 3") that follows a blank line; the
# text's first, empty line belongs to no chapter. Fails unless exactly 1189 come out.
set -eu
[ $# = 2 ] || { echo "usage: kjv_chapters.sh KJV.txt DIR" >&2; exit 2; }
rm -rf "$2"
mkdir -p "$2"
awk -v dir="$2" 'prev == "" && /^[1-3A-Z][A-Za-z ]* [0-9]+$/ {
    if (f) close(f); f = sprintf("%s/%04d.txt", dir, ++n) }
    f { print > f } { prev = $0 }' "$1"
n=$(ls "$2" | wc -l)
[ "$n" = 1189 ] || { echo "kjv_chapters.sh: $n chapters in $1, expected 1189" >&2; exit 1; }
