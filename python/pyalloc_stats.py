"""pyalloc's statistics as Python data: the older name of the package `pyalloc`'s API
(python/pyalloc), kept for the scripts and tests that import it.

    >>> import pyalloc_stats
    >>> s = pyalloc_stats.stats()          # dict, from the JSON the library writes
    >>> pyalloc_stats.mode()               # 'standalone', 'installed', 'aside' or 'passive'

Unlike `import pyalloc`, these functions load the library when it is not in the process yet
(found at $PYALLOC_LIB, in the package or in the build tree): loaded into a running
interpreter, it stays passive; `install()` makes it the interpreter's allocator.
"""
import pyalloc
from pyalloc import _native, collect, install

__all__ = ["library", "stats", "report", "mode", "collect", "install"]


def library():
    """The loaded libpyalloc (ctypes.CDLL), loading it if needed."""
    return _native.handle(load=True)


def stats():
    """All statistics as a dict (per domain, per size class, arenas, OS figures)."""
    library()
    return pyalloc.stats()


def report():
    """The text report (what PYALLOC_STATS=1 prints at exit)."""
    library()
    return pyalloc.report()


def mode():
    """'standalone', 'installed', 'aside' or 'passive' (see pyalloc.mode())."""
    library()
    return pyalloc.mode()


if __name__ == "__main__":
    s = stats()
    m = mode()
    if m == "installed":
        print("pyalloc is installed: it is this interpreter's allocator")
    else:
        why = {"passive": "loaded into the running interpreter, which keeps its allocator; preload it with "
                          "LD_PRELOAD or call pyalloc_stats.install()",
               "aside": "it stepped aside (PYTHONMALLOC or an unsupported interpreter)"}.get(m, m)
        print(f"pyalloc is not the process allocator ({m}: {why})")
    for name, d in s["domains"].items():
        print(f"{name:7s} live blocks {d['live_blocks']:>10}  live bytes {d['live_bytes']:>12}  "
              f"allocations {d['allocations']:>12}")
    print(f"arenas {s['arenas_in_use']}, mapped {s['bytes_mapped'] / 2**20:.1f} MiB")
