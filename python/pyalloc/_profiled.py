"""``pyalloc run --profile FILE``: run the program, then write the heap profile to FILE when it
ends, before the interpreter tears its objects down (so the live view shows what the program
held at its end). Invoked as ``python -m pyalloc._profiled FILE (-m module | -c code |
script) [args]``; the program sees the ``sys.argv`` it would have had."""
from __future__ import annotations

import atexit
import runpy
import sys


def _write(path: str) -> None:
    from . import write_profile

    try:
        write_profile(path)
    except OSError as e:
        sys.stderr.write(f"pyalloc: {e.strerror}: {path}\n")


def main() -> None:
    path, mode, *rest = sys.argv[1:]
    atexit.register(_write, path)
    if mode == "-m":
        sys.argv = [rest[0], *rest[1:]]
        runpy.run_module(rest[0], run_name="__main__", alter_sys=True)
    elif mode == "-c":
        sys.argv = ["-c", *rest[1:]]
        code = compile(rest[0], "<string>", "exec")
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
    else:
        sys.argv = [mode, *rest]
        sys.path[0] = __import__("os").path.dirname(__import__("os").path.abspath(mode))
        runpy.run_path(mode, run_name="__main__")


if __name__ == "__main__":
    main()
