"""pyalloc's statistics as Python data.

    >>> import pyalloc_stats
    >>> s = pyalloc_stats.stats()          # dict, from the JSON the library writes
    >>> s["domains"]["object"]["live_blocks"]
    >>> [(c["size"], c["live_blocks"]) for c in s["domains"]["object"]["classes"]]
    >>> pyalloc_stats.mode()               # 'standalone', 'installed', 'aside' or 'passive'

Works when libpyalloc is preloaded (LD_PRELOAD) or loadable: the library is found in the
process first, then at $PYALLOC_LIB. Loaded into a running interpreter (no preload) the library
stays passive: the interpreter keeps its allocator and the statistics are pyalloc's own (none);
`install()` makes pyalloc the interpreter's allocator from then on. Pure Python over ctypes;
nothing to build.
"""
import ctypes
import json
import os

__all__ = ["library", "stats", "report", "mode", "collect", "install"]

_lib = None


def library():
    """The loaded libpyalloc (ctypes.CDLL)."""
    global _lib
    if _lib is not None:
        return _lib
    candidates = []
    for entry in os.environ.get("LD_PRELOAD", "").replace(":", " ").split():
        if "pyalloc" in os.path.basename(entry):
            candidates.append(entry)
    if os.environ.get("PYALLOC_LIB"):
        candidates.append(os.environ["PYALLOC_LIB"])
    here = os.path.dirname(os.path.abspath(__file__))
    candidates.append(os.path.join(here, "..", "target", "release", "libpyalloc.so"))
    candidates.append("libpyalloc.so")
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        lib.pyalloc_stats_json.restype = ctypes.c_size_t
        lib.pyalloc_stats_json.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        lib.pyalloc_stats_report.restype = ctypes.c_size_t
        lib.pyalloc_stats_report.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        lib.pyalloc_host_mode.restype = ctypes.c_int
        lib.pyalloc_collect.argtypes = [ctypes.c_int]
        if hasattr(lib, "pyalloc_install"):
            lib.pyalloc_install.restype = ctypes.c_int
        _lib = lib
        return lib
    raise OSError("libpyalloc.so not found: preload it or set PYALLOC_LIB")


def _text(fn):
    size = 1 << 16
    while True:
        buf = ctypes.create_string_buffer(size)
        need = fn(buf, size)
        if need < size:
            return buf.value.decode()
        size = need + 4096


def stats():
    """All statistics as a dict: per domain (live blocks and bytes, peak, allocations, frees,
    pools) and, under each domain's "classes", per size class (block size, live blocks and
    bytes, allocations, frees); arenas and OS figures. Bytes in bytes; every field is listed
    in docs/DESIGN.md, "Statistics". The same JSON as PYALLOC_STATS=json:PATH writes at exit."""
    return json.loads(_text(library().pyalloc_stats_json))


def report():
    """The text report (what PYALLOC_STATS=1 prints at exit)."""
    return _text(library().pyalloc_stats_report)


def mode():
    """'standalone', 'installed' (serving this interpreter), 'aside' (a host is present but
    pyalloc stepped aside, e.g. for PYTHONMALLOC=malloc) or 'passive' (loaded into the running
    interpreter, which keeps its allocator)."""
    return {0: "standalone", 1: "installed", 2: "aside", 3: "passive"}.get(library().pyalloc_host_mode(), "?")


def install():
    """Make pyalloc this interpreter's allocator from now on (pyalloc_install()); True on
    success. Blocks allocated before stay with the allocator that made them."""
    return library().pyalloc_install() == 0


def collect(purge=True):
    """Give empty pools back now, and with purge their pages to the OS."""
    library().pyalloc_collect(1 if purge else 0)


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
