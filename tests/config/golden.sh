#!/bin/sh
# usage: golden.sh GRIDBRIDGED NAME
# Runs `gridbridged -nv -c NAME.conf` in the current directory and compares
# its output (stdout then stderr) and exit status with NAME.out.
bin=$1
name=$2
actual=$("$bin" -n -v -c "$name.conf" 2>&1; echo "exit=$?")
printf '%s\n' "$actual" | diff -u "$name.out" -
