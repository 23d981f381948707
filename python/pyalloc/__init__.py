"""pyalloc: CPython's memory manager, rebuilt in Rust, for your interpreter.

Run a program with pyalloc serving every allocation from start-up::

    pyalloc run script.py [args]        # or: python -m pyalloc run -m module / -c code
    pyalloc exec -- CMD [args]          # any command (e.g. a Python-embedding program)

and look at it from inside::

    >>> import pyalloc
    >>> pyalloc.active()                # does pyalloc serve this interpreter?
    >>> pyalloc.stats()["domains"]["object"]["live_bytes"]
    >>> pyalloc.collect()               # give free memory back to the OS now

and find what holds memory (the sampling heap profiler, ``pyalloc run --profile FILE``)::

    >>> pyalloc.profile().top(5)        # the sites holding the most memory now
    >>> pyalloc.write_profile("heap.collapsed")   # or .pb.gz (pprof), .json

``import pyalloc`` loads nothing and installs nothing: only :func:`install` (and the CLI and the
pytest plugin, when asked) change which allocator serves the interpreter.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Optional

from . import _native

__all__ = [
    "active",
    "mode",
    "stats",
    "report",
    "collect",
    "install",
    "library_path",
    "library_version",
    "NotActiveError",
    "__version__",
    "start_profile",
    "stop_profile",
    "reset_profile",
    "profile_rate",
    "write_profile",
    "profile",
    "ProfileSnapshot",
]

__version__ = "0.1.0"

_MODES = {0: "standalone", 1: "installed", 2: "aside", 3: "passive"}


class NotActiveError(RuntimeError):
    """pyalloc is not loaded in this process (run under ``pyalloc run``, or call
    :func:`install`)."""


def _require():
    lib = _native.handle()
    if lib is None:
        raise NotActiveError(
            "pyalloc is not loaded in this process: start it with `pyalloc run ...` "
            "(or LD_PRELOAD=$(pyalloc lib)), or call pyalloc.install()"
        )
    return lib


def mode() -> Optional[str]:
    """How pyalloc stands in this process: ``None`` (not loaded), ``'installed'`` (it serves
    this interpreter), ``'passive'`` (loaded into the running interpreter, which keeps its
    allocator until :func:`install`), ``'aside'`` (it stepped aside, e.g. for PYTHONMALLOC) or
    ``'standalone'``."""
    lib = _native.handle()
    if lib is None:
        return None
    return _MODES.get(lib.pyalloc_host_mode(), "unknown")


def active() -> bool:
    """True when pyalloc serves this interpreter's allocations (preloaded, or installed at run
    time). Never loads anything."""
    return mode() == "installed"


def stats() -> Dict[str, Any]:
    """All statistics, as a dict (the JSON report of ``pyalloc_stats_json``).

    Per domain (``stats()["domains"]["raw" | "mem" | "object"]``): allocations, frees and live
    blocks (counts), live and peak live bytes, pools in use, large blocks and their bytes,
    mismatched (wrong-domain) frees. Per size class, arenas, and the process-wide figures
    (bytes mapped, purged, held): see ``docs/PYTHON.md`` for every field and its unit. Sizes are
    in bytes.

    Raises :class:`NotActiveError` when pyalloc is not loaded in this process.
    """
    return json.loads(_native.text(_require().pyalloc_stats_json))


def report() -> str:
    """The text report (what ``PYALLOC_STATS=1`` prints at exit)."""
    return _native.text(_require().pyalloc_stats_report)


def collect(purge: bool = True) -> bool:
    """Give pyalloc's empty pools back now, and with ``purge`` their pages to the OS. False (and
    nothing done) when pyalloc is not loaded."""
    lib = _native.handle()
    if lib is None:
        return False
    lib.pyalloc_collect(1 if purge else 0)
    return True


def install() -> bool:
    """Make pyalloc this interpreter's allocator from now on, loading the library if needed.
    Blocks allocated before stay with the allocator that made them (and go back to it when
    freed). True when pyalloc serves the interpreter afterwards."""
    lib = _native.handle(load=True)
    if lib.pyalloc_host_mode() == 1:
        return True
    if not hasattr(lib, "pyalloc_install"):
        return False
    return lib.pyalloc_install() == 0 and lib.pyalloc_host_mode() == 1


def library_path() -> Optional[str]:
    """The path of libpyalloc: the copy loaded in this process, else the one this package ships
    (what ``LD_PRELOAD`` takes). ``None`` when there is none."""
    return _native.loaded_path() or _native.shipped_path()


def library_version() -> Optional[str]:
    """The loaded library's version (``None`` when not loaded)."""
    lib = _native.handle()
    if lib is None:
        return None
    v = lib.pyalloc_version()
    return v.decode() if v else None


from .profiling import (  # noqa: E402  (after _require, which it uses)
    ProfileSnapshot,
    profile,
    profile_rate,
    reset_profile,
    start_profile,
    stop_profile,
    write_profile,
)
