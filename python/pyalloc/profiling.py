"""The sampling heap profiler, from Python: where this process's memory was allocated and which
code holds it now.

pyalloc samples one allocation per ``rate`` bytes on average (512 KiB by default) and records
its stack; every figure is an unbiased estimate of the real bytes and blocks. Sampling starts
with ``PYALLOC_PROFILE_RATE`` / ``PYALLOC_PROFILE`` at start-up, ``pyalloc run --profile
FILE``, or :func:`start_profile`::

    >>> import pyalloc
    >>> before = pyalloc.profile()
    >>> ...                                   # the code that leaks
    >>> for d in pyalloc.profile().compare_to(before)[:5]:
    ...     print(d)
    >>> pyalloc.write_profile("heap.pb.gz")   # or .collapsed (flame graphs), .json

See ``docs/PROFILE.md``.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from . import _native

__all__ = [
    "start_profile",
    "stop_profile",
    "reset_profile",
    "profile_rate",
    "write_profile",
    "profile",
    "ProfileSnapshot",
    "ProfileSite",
    "ProfileDiff",
    "Frame",
]


def _lib():
    from . import _require

    return _require()


def start_profile(rate: int = 0) -> None:
    """Start sampling: one allocation per ``rate`` bytes on average (0: 512 KiB). Other threads
    start within 64 MiB of their next allocations."""
    _lib().pyalloc_profile_start(int(rate))


def stop_profile() -> None:
    """Stop sampling (what was sampled stays; freed blocks still leave the live view)."""
    _lib().pyalloc_profile_stop()


def reset_profile() -> None:
    """Start the cumulative view afresh (the live view stays)."""
    _lib().pyalloc_profile_reset()


def profile_rate() -> int:
    """The mean bytes between samples, 0 while sampling is off (or pyalloc is not loaded)."""
    lib = _native.handle()
    return 0 if lib is None else int(lib.pyalloc_profile_rate())


def write_profile(path: str) -> None:
    """Write the profile to ``path``, in the format its suffix names: ``.collapsed`` (the live
    view as folded stacks, for flame graph tools and speedscope), ``.json``, ``.pb.gz``
    (pprof). Raises :class:`OSError` when it cannot be written."""
    err = _lib().pyalloc_profile_write(os.fsencode(path))
    if err != 0:
        raise OSError(err, f"cannot write the profile: {os.strerror(err)}", path)


@dataclass(frozen=True)
class Frame:
    """A frame: a Python function's line, or a native function."""

    function: str
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.function} ({self.file}:{self.line})" if self.line else self.function


@dataclass
class ProfileSite:
    """Allocations with one key (a stack, a line or a function; see :func:`profile`):
    estimated bytes and blocks live now and allocated since start (or the last reset), and the
    domains they came from (``"obj"``, ``"mem+obj"``, ...)."""

    frames: Tuple[Frame, ...]
    domain: str
    live_bytes: int
    live_count: int
    alloc_bytes: int
    alloc_count: int

    @property
    def frame(self) -> Optional[Frame]:
        """The innermost frame."""
        return self.frames[0] if self.frames else None

    def __str__(self) -> str:
        where = str(self.frame) if self.frames else "[unknown]"
        return f"{where}: {_size(self.live_bytes)} live in ~{self.live_count} blocks ({self.domain})"


@dataclass
class ProfileDiff:
    """A site's growth between two snapshots (live view)."""

    site: ProfileSite
    size_diff: int
    count_diff: int

    def __str__(self) -> str:
        sign = "+" if self.size_diff >= 0 else "-"
        return f"{self.site} ({sign}{_size(abs(self.size_diff))})"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class ProfileSnapshot(Sequence[ProfileSite]):
    """The profile at one moment: sites sorted by live bytes, largest first (a sequence)."""

    def __init__(self, data: Dict[str, Any], group_by: str, domains: Sequence[str] = ("raw", "mem", "obj")):
        self.data = data
        self.group_by = group_by
        self.rate: int = data.get("rate", 0)
        self.live_bytes: int = data.get("live_bytes", 0)
        self.alloc_bytes: int = data.get("alloc_bytes", 0)
        sites: Dict[Tuple, ProfileSite] = {}
        for s in data.get("sites", []):
            if s["domain"] not in domains:
                continue
            frames = tuple(_frame(f) for f in s["frames"])
            if group_by == "line":
                key_frames = frames[:1]
            elif group_by == "function":
                key_frames = tuple(Frame(f.function, f.file, 0) for f in frames[:1])
            else:
                key_frames = frames
            site = sites.get(key_frames)
            if site is None:
                site = sites[key_frames] = ProfileSite(key_frames, s["domain"], 0, 0, 0, 0)
            elif s["domain"] not in site.domain.split("+"):
                site.domain += "+" + s["domain"]
            site.live_bytes += s["live_bytes"]
            site.live_count += s["live_count"]
            site.alloc_bytes += s["alloc_bytes"]
            site.alloc_count += s["alloc_count"]
        self.sites: List[ProfileSite] = sorted(sites.values(), key=lambda s: (-s.live_bytes, -s.alloc_bytes))

    def __getitem__(self, i):  # type: ignore[override]
        return self.sites[i]

    def __len__(self) -> int:
        return len(self.sites)

    def __iter__(self) -> Iterator[ProfileSite]:
        return iter(self.sites)

    def top(self, n: int = 10, view: str = "live") -> List[ProfileSite]:
        """The ``n`` largest sites of the ``live`` view (bytes held now) or the ``alloc`` one
        (bytes allocated since start or the last reset)."""
        if view == "alloc":
            return sorted(self.sites, key=lambda s: -s.alloc_bytes)[:n]
        return [s for s in self.sites if s.live_bytes > 0][:n]

    def compare_to(self, old: "ProfileSnapshot") -> List[ProfileDiff]:
        """What grew since ``old`` (live view), largest growth first; sites that shrank come
        last. (tracemalloc's ``Snapshot.compare_to`` sorts by the size of the change either
        way; a leak hunt wants growth first, and sampled sites that hold steady move a little
        either way.)"""
        before = {s.frames: s for s in old.sites}
        out = []
        for s in self.sites:
            o = before.pop(s.frames, None)
            out.append(ProfileDiff(s, s.live_bytes - (o.live_bytes if o else 0), s.live_count - (o.live_count if o else 0)))
        for o in before.values():
            gone = ProfileSite(o.frames, o.domain, 0, 0, o.alloc_bytes, o.alloc_count)
            out.append(ProfileDiff(gone, -o.live_bytes, -o.live_count))
        out.sort(key=lambda d: (-d.size_diff, -d.site.live_bytes))
        return out


def _frame(f: Dict[str, Any]) -> Frame:
    if "function" in f:
        return Frame(f["function"], f["file"], f["line"])
    sym = f.get("symbol") or f.get("address", "?")
    return Frame(sym, f.get("object", ""), 0)


def profile(group_by: str = "stack", domains: Sequence[str] = ("raw", "mem", "obj")) -> ProfileSnapshot:
    """A snapshot of the profile: its sites, the largest live ones first. ``group_by``:
    ``"stack"`` (every distinct stack), ``"line"`` (the innermost frame's line, as
    tracemalloc's ``"lineno"``) or ``"function"``; ``domains``: the allocator domains counted
    (tracemalloc's own tables are raw-domain memory pyalloc sees and tracemalloc does not).
    Raises :class:`pyalloc.NotActiveError` when pyalloc is not loaded."""
    if group_by not in ("stack", "line", "function"):
        raise ValueError("group_by is 'stack', 'line' or 'function'")
    fd, path = tempfile.mkstemp(suffix=".json", prefix="pyalloc-profile-")
    os.close(fd)
    try:
        write_profile(path)
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    finally:
        os.unlink(path)
    return ProfileSnapshot(data, group_by, domains)
