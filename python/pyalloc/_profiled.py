"""``pyalloc run --profile FILE``: run the program, then write the heap profile to FILE when it
ends, before the interpreter tears its objects down (so that the live view shows what the
program held at its end). Run as a script (two frames under the program's own in every stack)::

    python .../pyalloc/_profiled.py FILE (-m module | -c code | script) [args]

The program sees the ``sys.argv``, ``sys.path[0]`` and ``__main__`` it would have had.
"""
import atexit
import os
import sys
import types


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[0] = os.path.dirname(here)
    import pyalloc

    path, mode, *rest = sys.argv[1:]

    def write():
        try:
            pyalloc.write_profile(path)
        except OSError as e:
            sys.stderr.write(f"pyalloc: {e.strerror}: {path}\n")

    atexit.register(write)
    if mode == "-m":
        import runpy

        sys.argv = [rest[0], *rest[1:]]
        sys.path[0] = os.getcwd()
        runpy.run_module(rest[0], run_name="__main__", alter_sys=True)
        return
    if mode == "-c":
        sys.argv = ["-c", *rest[1:]]
        sys.path[0] = ""
        source, filename = rest[0], "<string>"
    else:
        sys.argv = [mode, *rest]
        sys.path[0] = os.path.dirname(os.path.abspath(mode))
        if os.path.isdir(mode) or not mode.endswith(".py"):
            import runpy

            runpy.run_path(mode, run_name="__main__")
            return
        with open(mode, "rb") as f:
            source, filename = f.read(), mode
    module = types.ModuleType("__main__")
    module.__file__ = filename if filename != "<string>" else None
    module.__builtins__ = __builtins__
    sys.modules["__main__"] = module
    exec(compile(source, filename, "exec"), module.__dict__)


if __name__ == "__main__":
    main()
