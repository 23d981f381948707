"""Hearing of misuse from Python: a domain mix (``PyMem_Free`` of a ``PyObject_Malloc`` block,
``free()`` of a Python block, ...) found by pyalloc is recorded with the Python traceback of the
code that made it, instead of stopping the program. Used by the pytest plugin.
"""
from __future__ import annotations

import ctypes
import threading
import traceback
from typing import Callable, List, Optional

from . import _native

KINDS = {
    1: "wrong domain",
    2: "not the start of a block",
    3: "block not allocated (double free or stale pointer)",
    4: "pointer not owned by pyalloc",
    5: "pyalloc block given to libc",
    6: "double free",
    7: "free list corrupted (overflow or write after free)",
}
DOMAINS = {-1: "libc", 0: "raw", 1: "mem", 2: "object"}


class _Misuse(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_int),
        ("domain", ctypes.c_int),
        ("owner", ctypes.c_int),
        ("ptr", ctypes.c_void_p),
        ("size", ctypes.c_size_t),
        ("function", ctypes.c_char_p),
        ("message", ctypes.c_char_p),
    ]


_HANDLER = ctypes.CFUNCTYPE(None, ctypes.POINTER(_Misuse), ctypes.c_void_p)


class Misuse:
    """One misuse: what pyalloc found, and the Python stack that made it."""

    def __init__(self, m: _Misuse, stack: traceback.StackSummary, thread: str) -> None:
        self.kind = KINDS.get(m.kind, str(m.kind))
        self.function = (m.function or b"?").decode(errors="replace")
        self.pointer = m.ptr or 0
        self.domain = DOMAINS.get(m.domain, str(m.domain))
        self.owner = DOMAINS.get(m.owner, "none") if m.owner >= 0 else "none"
        self.size = m.size
        self.message = (m.message or b"").decode(errors="replace")
        self.stack = stack
        self.thread = thread

    def format(self) -> str:
        """The message and the Python traceback, most recent call last."""
        lines = [f"pyalloc: {self.message}"]
        lines.append(
            f"  function {self.function}, pointer {self.pointer:#x}, domain asked: {self.domain}, "
            f"owner: {self.owner}, size: {self.size} bytes, thread {self.thread}"
        )
        lines.append("Python traceback (most recent call last):")
        lines.extend(line.rstrip("\n") for line in traceback.format_list(self.stack))
        return "\n".join(lines)


class Recorder:
    """Install pyalloc's misuse handler and keep what it hears (the process must have pyalloc
    loaded). With a handler, strict mode goes on as compat mode does: the block is freed by its
    owner and invalid pointers are left alone."""

    def __init__(self, on_misuse: Optional[Callable[[Misuse], None]] = None) -> None:
        lib = _native.handle()
        if lib is None:
            raise RuntimeError("pyalloc is not loaded in this process")
        self.events: List[Misuse] = []
        self._on_misuse = on_misuse
        self._lib = lib
        self._callback = _HANDLER(self._handle)  # kept alive as long as the recorder
        lib.pyalloc_set_misuse_handler.restype = ctypes.c_int
        lib.pyalloc_set_misuse_handler.argtypes = [_HANDLER, ctypes.c_void_p]
        lib.pyalloc_set_misuse_handler(self._callback, None)

    def _handle(self, m, _arg) -> None:
        try:
            stack = traceback.extract_stack()[:-1]
            event = Misuse(m.contents, stack, threading.current_thread().name)
            self.events.append(event)
            if self._on_misuse is not None:
                self._on_misuse(event)
        except BaseException:  # never raise into the allocator
            pass

    def close(self) -> None:
        """Remove the handler (strict mode stops the program again)."""
        self._lib.pyalloc_set_misuse_handler(_HANDLER(), None)
