"""Finding and loading libpyalloc, without side effects until asked.

The library is looked for, in order: the copy already loaded in this process (preloaded with
LD_PRELOAD, or installed by :func:`pyalloc.install`), ``$PYALLOC_LIB``, the copy shipped inside
this package, and a build tree's ``target/release/libpyalloc.so`` when running from a checkout.
"""
from __future__ import annotations

import ctypes
import glob
import os
from typing import Optional

_HERE = os.path.dirname(os.path.abspath(__file__))
_lib: Optional[ctypes.CDLL] = None


def loaded_path() -> Optional[str]:
    """The path of the libpyalloc mapped into this process, if any (read from /proc/self/maps;
    nothing is loaded)."""
    try:
        with open("/proc/self/maps", "rb") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6:
                    path = parts[5].strip().decode(errors="replace")
                    if os.path.basename(path).startswith("libpyalloc"):
                        return path
    except OSError:
        pass
    return None


def shipped_path() -> Optional[str]:
    """The library this package ships (or, from a checkout, the build tree's), if present."""
    env = os.environ.get("PYALLOC_LIB")
    if env and os.path.exists(env):
        return os.path.abspath(env)
    found = sorted(glob.glob(os.path.join(_HERE, "libpyalloc*.so*")))
    if found:
        return found[0]
    tree = os.path.normpath(os.path.join(_HERE, "..", "..", "target", "release", "libpyalloc.so"))
    if os.path.exists(tree):
        return tree
    return None


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    lib.pyalloc_stats_json.restype = ctypes.c_size_t
    lib.pyalloc_stats_json.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    lib.pyalloc_stats_report.restype = ctypes.c_size_t
    lib.pyalloc_stats_report.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    lib.pyalloc_host_mode.restype = ctypes.c_int
    lib.pyalloc_host_mode.argtypes = []
    lib.pyalloc_collect.restype = None
    lib.pyalloc_collect.argtypes = [ctypes.c_int]
    lib.pyalloc_version.restype = ctypes.c_char_p
    lib.pyalloc_version.argtypes = []
    lib.pyalloc_set_check_mode.restype = ctypes.c_int
    lib.pyalloc_set_check_mode.argtypes = [ctypes.c_int]
    if hasattr(lib, "pyalloc_profile_write"):
        lib.pyalloc_profile_write.restype = ctypes.c_int
        lib.pyalloc_profile_write.argtypes = [ctypes.c_char_p]
        lib.pyalloc_profile_start.restype = None
        lib.pyalloc_profile_start.argtypes = [ctypes.c_size_t]
        lib.pyalloc_profile_stop.restype = None
        lib.pyalloc_profile_stop.argtypes = []
        lib.pyalloc_profile_reset.restype = None
        lib.pyalloc_profile_reset.argtypes = []
        lib.pyalloc_profile_rate.restype = ctypes.c_size_t
        lib.pyalloc_profile_rate.argtypes = []
    if hasattr(lib, "pyalloc_install"):
        lib.pyalloc_install.restype = ctypes.c_int
        lib.pyalloc_install.argtypes = []
    return lib


def handle(load: bool = False) -> Optional[ctypes.CDLL]:
    """The library: the copy in this process, or with ``load`` the shipped one, loaded now
    (loading it into a running interpreter changes nothing: it stays passive)."""
    global _lib
    if _lib is not None:
        return _lib
    path = loaded_path()
    if path is not None:
        try:
            _lib = _declare(ctypes.CDLL(path, mode=os.RTLD_NOLOAD | ctypes.RTLD_GLOBAL))
            return _lib
        except OSError:
            pass
    if not load:
        return None
    path = shipped_path()
    if path is None:
        raise OSError("libpyalloc not found: reinstall the pyalloc package or set PYALLOC_LIB")
    _lib = _declare(ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL))
    return _lib


def text(fn) -> str:
    """Call a pyalloc function that writes NUL-terminated text into a buffer and returns the
    length it needed, growing the buffer until the text fits."""
    size = 1 << 16
    while True:
        buf = ctypes.create_string_buffer(size)
        need = fn(buf, size)
        if need < size:
            return buf.value.decode(errors="replace")
        size = need + 4096
