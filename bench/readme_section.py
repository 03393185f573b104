"""Writes one benchmark's section of bench/README.md: the "## NAME" section is
replaced (or appended), every other section is kept as it is. Shared by the
bench scripts' report code (they import it with bench/ on sys.path)."""
import os

HEADER = "# Benchmarks\n\nEach benchmark writes its own section below; the others are left as they are.\n"


def write_section(path, name, sec):
    try:
        text = open(path).read()
    except FileNotFoundError:
        text = HEADER
    lines = text.split("\n")
    start = next((i for i, l in enumerate(lines) if l.strip() == "## " + name), None)
    if start is None:
        text = text.rstrip("\n") + "\n\n" + sec
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        rest = "\n".join(lines[end:])
        text = "\n".join(lines[:start]) + ("\n" if start else "") + sec + ("\n" + rest if rest else "")
    tmp = path + ".tmp-" + name
    with open(tmp, "w") as fh:
        fh.write(text.rstrip("\n") + "\n")
    os.replace(tmp, path)
    print("updated", path)
