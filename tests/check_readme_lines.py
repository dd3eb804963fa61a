# The README's pointers into razor.c name a line; this checks that each still holds what it names.
#   `name` (line N   or   `name`, line N: razor.c's line N contains name (a trailing "()" left out)
#   | k | N |  in the table of sections (How to read razor.c): line N is where section k's heading " * k. " is
# Any other "line N" in the README is an error too, so that no pointer goes unchecked.
# Usage: python3 tests/check_readme_lines.py [README.md [razor.c]]; prints every failure, exit status 1 if any.
import re
import sys

readme_path = sys.argv[1] if len(sys.argv) > 1 else "README.md"
source_path = sys.argv[2] if len(sys.argv) > 2 else "razor.c"
readme = open(readme_path, encoding="utf-8").read()
source = open(source_path, encoding="utf-8").read().split("\n")
text = re.sub(r"\s+", " ", readme)  # a pointer may break across lines


def where(needle):  # the lines that hold needle, to suggest one
    found = [str(i + 1) for i, line in enumerate(source) if needle in line]
    return ", ".join(found[:5]) if found else "none"


errors, checked, covered = [], 0, []
for m in re.finditer(r"`([^`]+)`(?: \(|, )line (\d+)", text):
    name, n = m.group(1), int(m.group(2))
    needle = name[:-2] if name.endswith("()") else name
    checked += 1
    covered.append((m.start(2), m.end(2)))
    if not (1 <= n <= len(source) and needle in source[n - 1]):
        errors.append(f"`{name}` (line {n}): {source_path} line {n} does not hold it (lines with it: {where(needle)})")
guide = readme.split("## How to read razor.c", 1)[-1].split("\n## ", 1)[0]
for m in re.finditer(r"^\| (\d+) \| (\d+) \|", guide, re.M):
    k, n = m.group(1), int(m.group(2))
    checked += 1
    if not (1 <= n <= len(source) and source[n - 1].startswith(f" * {k}. ")):
        errors.append(f"section {k} from line {n}: {source_path} line {n} is not its heading"
                      f" (lines with it: {where(f' * {k}. ')})")
for m in re.finditer(r"\blines? (\d+)", text):
    if not any(a <= m.start(1) < b for a, b in covered):
        errors.append(f"'{text[max(0, m.start() - 40):m.end()]}': a line number with no `name` before it to check")
for e in errors:
    print(f"{readme_path}: {e}")
if errors:
    sys.exit(1)
print(f"{readme_path}: its {checked} pointers into {source_path} hold")
