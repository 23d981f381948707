"""Render a folded-stacks file (``pyalloc run --profile heap.collapsed``) as a flame graph SVG,
without other tools::

    pyalloc flamegraph heap.collapsed heap.svg [--title TEXT]

Each box is a frame; its width is the bytes held under it (the live view), the root at the
bottom. Hovering a box shows its frame and size. (flamegraph.pl, inferno and speedscope read the
same file.)
"""
from __future__ import annotations

import html
import zlib
from typing import Dict, List, Optional, Tuple

WIDTH = 1200
ROW = 17
PAD = 10


class _Node:
    __slots__ = ("name", "value", "children")

    def __init__(self, name: str):
        self.name = name
        self.value = 0
        self.children: Dict[str, "_Node"] = {}


def read_folded(path: str) -> _Node:
    root = _Node("all")
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            stack, _, n = line.rpartition(" ")
            if not stack or not n.isdigit():
                continue
            v = int(n)
            root.value += v
            node = root
            for frame in stack.split(";"):
                node = node.children.setdefault(frame, _Node(frame))
                node.value += v
    return root


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _colour(name: str) -> str:
    h = zlib.crc32(name.encode())
    r = 205 + h % 50
    g = 80 + (h >> 8) % 120
    b = 40 + (h >> 16) % 50
    return f"rgb({r},{g},{b})"


def render(root: _Node, title: str = "Heap profile (live bytes)") -> str:
    boxes: List[Tuple[int, float, float, _Node]] = []
    depth = 0

    def walk(node: _Node, level: int, x: float) -> None:
        nonlocal depth
        depth = max(depth, level)
        boxes.append((level, x, node.value, node))
        for child in sorted(node.children.values(), key=lambda c: c.name):
            walk(child, level + 1, x)
            x += child.value

    walk(root, 0, 0.0)
    total = max(root.value, 1)
    scale = (WIDTH - 2 * PAD) / total
    height = (depth + 1) * ROW + 3 * PAD + 20
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="Verdana, sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{height}" fill="#fdf8ee"/>',
        f'<text x="{WIDTH / 2}" y="{PAD + 12}" text-anchor="middle" font-size="15">{html.escape(title)}</text>',
    ]
    for level, x, v, node in boxes:
        w = v * scale
        if w < 0.5:
            continue
        y = height - PAD - (level + 1) * ROW
        label = f"{node.name} ({_size(v)}, {100 * v / total:.1f}%)"
        out.append(f"<g><title>{html.escape(label)}</title>")
        out.append(
            f'<rect x="{PAD + x * scale:.1f}" y="{y}" width="{w:.1f}" height="{ROW - 1}" '
            f'fill="{_colour(node.name)}" rx="2"/>'
        )
        chars = int((w - 6) / 6.5)
        if chars >= 3:
            text = node.name if len(node.name) <= chars else node.name[: chars - 2] + ".."
            out.append(f'<text x="{PAD + x * scale + 3:.1f}" y="{y + ROW - 5}">{html.escape(text)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="pyalloc flamegraph", description=__doc__.splitlines()[0])
    ap.add_argument("folded", help="a .collapsed file")
    ap.add_argument("svg", help="the SVG to write")
    ap.add_argument("--title", default="Heap profile (live bytes)")
    a = ap.parse_args(argv)
    root = read_folded(a.folded)
    with open(a.svg, "w", encoding="utf-8") as f:
        f.write(render(root, a.title))
    print(f"{a.svg}: {_size(root.value)} in {len(root.children)} root frames")
    return 0
