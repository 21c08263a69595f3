#!/usr/bin/env python3
"""The shape of the code, for docs/development.md: lines per module, the largest functions,
and what each module imports. Run from the repository root: Tests/Tools/codemap.py [ROOT]."""
import os, re, sys

root = sys.argv[1] if len(sys.argv) > 1 else "."
modules = {}  # name -> list of files
support = os.path.join(root, "Tests", "Support")
for dirpath, _, files in os.walk(support):
    for f in files:
        if f.endswith(".swift"):
            modules.setdefault("PortwatchTestSupport", []).append(os.path.join(dirpath, f))
for dirpath, _, files in os.walk(os.path.join(root, "Sources")):
    for f in files:
        if f.endswith((".swift", ".h", ".c")):
            rel = os.path.relpath(os.path.join(dirpath, f), os.path.join(root, "Sources"))
            parts = rel.split(os.sep)
            # A module is the folder that holds its files (Sources/X or Sources/Group/X).
            module = parts[0] if len(parts) == 2 or parts[0] not in ("C", "Tools", "Modules", "Executables") else parts[1]
            modules.setdefault(module, []).append(os.path.join(dirpath, f))

def code_lines(path):
    n = 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            s = line.strip()
            if s and not s.startswith("//"):
                n += 1
    return n

def functions(path):
    """(lines, name) of each func/init body, by brace depth."""
    out = []
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        m = re.search(r"\b(func\s+[^\s(<]+|init[?!]?\s*[(<])", lines[i])
        if m and not lines[i].strip().startswith("//") and "{" in "".join(lines[i:i + 8]):
            depth, start, j, opened = 0, i, i, False
            while j < len(lines):
                code = re.sub(r'"(\\.|[^"\\])*"', '""', lines[j].split("//")[0])
                depth += code.count("{") - code.count("}")
                if code.count("{"):
                    opened = True
                if opened and depth <= 0:
                    break
                j += 1
            name = m.group(1).replace("func ", "").rstrip("(<")
            out.append((j - start + 1, f"{os.path.basename(path)}:{start + 1} {name}"))
            i = start + 1
            continue
        i += 1
    return out

print("| module | files | lines of code | imports |")
print("|---|---|---|---|")
allfuncs = []
for module in sorted(modules):
    files = modules[module]
    total = sum(code_lines(f) for f in files)
    imports = set()
    for f in files:
        if f.endswith(".swift"):
            for line in open(f, encoding="utf-8"):
                m = re.match(r"(?:@preconcurrency\s+|@_implementationOnly\s+)?import\s+([A-Z]\w*)", line)
                if m:
                    imports.add(m.group(1))
            allfuncs += [(n, f"{module}/{where}") for n, where in functions(f)]
    local = sorted(i for i in imports if i in modules)
    other = sorted(i for i in imports if i not in modules)
    shown = ", ".join(local) + ("; " if local and other else "") + ", ".join(other)
    print(f"| {module} | {len(files)} | {total} | {shown} |")
print()
print("Largest functions (lines):")
print()
for n, where in sorted(allfuncs, reverse=True)[:12]:
    print(f"- {n}: {where}")
