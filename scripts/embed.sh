#!/bin/sh
# Prints a C file defining NAME as the NUL-terminated contents of FILE.
#   scripts/embed.sh NAME FILE
set -eu
name=$1 file=$2
echo "/* Generated from $file by scripts/embed.sh; do not edit. */"
echo "extern const char ${name}[];"
echo "const char ${name}[] = {"
od -An -v -tx1 "$file" | sed -e 's/ \([0-9a-f][0-9a-f]\)/0x\1,/g' -e 's/^/    /'
echo "    0x00};"
