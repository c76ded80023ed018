#!/bin/sh
# A scratch repository with fixed names and dates, so that every hash is the same in every run:
# the output must be identical under glibc's malloc and under every kheap library.
set -e
export HOME="$PWD" GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=kheap GIT_AUTHOR_EMAIL=kheap@example.org \
    GIT_COMMITTER_NAME=kheap GIT_COMMITTER_EMAIL=kheap@example.org
rm -rf repo
git init -q -b main repo
cd repo
for i in 1 2 3; do
    export GIT_AUTHOR_DATE="2024-01-0$i 12:00:00 +0000" GIT_COMMITTER_DATE="2024-01-0$i 12:00:00 +0000"
    seq 1 $((i * 400)) | sed "s/^/file $i line /" > "f$i.txt"
    seq $i 3 2000 > common.txt
    git add -A
    git commit -q -m "commit $i"
done
git log --stat --format='%H %s'
git diff HEAD~2 HEAD -- common.txt | tail -n 5
git grep -c 'line 1' | sort
git fsck --strict
git count-objects -v | grep -v size
