#!/usr/bin/env python3
"""Replaces the text between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in FILE with the
standard input, so that generated figures reach the docs without being retyped.
Usage: splice.py FILE NAME < generated.md"""
import sys

path, name = sys.argv[1], sys.argv[2]
begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
text = open(path, encoding="utf-8").read()
if begin not in text or end not in text:
    sys.exit(f"splice: {path} has no {begin} ... {end} markers")
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
body = sys.stdin.read().rstrip("\n")
open(path, "w", encoding="utf-8").write(f"{head}{begin}\n{body}\n{end}{tail}")
