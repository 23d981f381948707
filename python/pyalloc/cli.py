"""The ``pyalloc`` command: run a program with pyalloc serving it from start-up.

    pyalloc run [options] script.py [args]
    pyalloc run [options] -m module [args]
    pyalloc run [options] -c code [args]
    pyalloc exec [options] -- CMD [args]
    pyalloc lib                      # the library's path, for LD_PRELOAD by hand
    pyalloc flamegraph heap.collapsed heap.svg   # a heap profile as a flame graph

The program replaces this process (exec): its exit code, stdin, stdout and stderr are its own.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, NoReturn, Optional, Sequence

from . import __version__, _native


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--check",
        choices=("strict", "compat"),
        help="strict: a wrong-domain or foreign free stops the program with a message naming "
        "the pointer and the domains; compat: it is counted and freed by its owner "
        "(default under CPython: compat)",
    )
    p.add_argument("--stats", action="store_true", help="print the statistics report on stderr at exit")
    p.add_argument("--stats-json", metavar="FILE", help="write the statistics as JSON to FILE at exit (%%p: the pid)")
    p.add_argument(
        "--harden",
        action="store_true",
        help="hardened mode: fresh blocks handed out in a shuffled order (the checks on overflows "
        "into free blocks, interior pointers and double frees are on in every mode)",
    )
    p.add_argument("--verbose", action="store_true", help="print what pyalloc decided at load")
    p.add_argument(
        "--profile",
        metavar="FILE",
        help="sample allocations and write the heap profile to FILE: .collapsed (flame graphs), "
        ".pb.gz (pprof) or .json (run: when the program ends; exec: at exit, %%p: the pid)",
    )
    p.add_argument(
        "--profile-rate",
        metavar="BYTES",
        help="mean bytes between samples (default 512K; sizes as 64K, 2M)",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pyalloc",
        description="Run programs with pyalloc, CPython's memory manager rebuilt in Rust, serving "
        "every allocation from start-up.",
    )
    p.add_argument("--version", action="version", version=f"pyalloc {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run this Python interpreter with pyalloc: a script, -m module or -c code",
        description="Run this Python interpreter (%s) with pyalloc serving it from start-up." % sys.executable,
    )
    _add_options(run)
    run.add_argument("-m", dest="module", nargs=argparse.REMAINDER, help="run a library module as a script")
    run.add_argument("-c", dest="code", nargs=argparse.REMAINDER, help="run code given as a string")
    run.add_argument("script", nargs=argparse.REMAINDER, help="script path and its arguments")
    ex = sub.add_parser("exec", help="run any command with pyalloc preloaded", description="Run CMD with pyalloc preloaded.")
    _add_options(ex)
    ex.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [args]")
    sub.add_parser("lib", help="print the path of the library (for LD_PRELOAD)")
    fg = sub.add_parser("flamegraph", help="render a .collapsed heap profile as a flame graph SVG", add_help=False)
    fg.add_argument("args", nargs=argparse.REMAINDER)
    return p


def environment(
    lib: str,
    check: Optional[str] = None,
    stats: bool = False,
    stats_json: Optional[str] = None,
    verbose: bool = False,
    base: Optional[Dict[str, str]] = None,
    harden: bool = False,
    profile: Optional[str] = None,
    profile_rate: Optional[str] = None,
    profile_at_exit: bool = True,
) -> Dict[str, str]:
    """The environment that makes pyalloc serve a program: ``LD_PRELOAD`` first, then the
    options as ``PYALLOC_*`` variables."""
    env = dict(os.environ if base is None else base)
    preload = [e for e in env.get("LD_PRELOAD", "").replace(":", " ").split() if e]
    if os.path.abspath(lib) not in [os.path.abspath(e) for e in preload]:
        preload.insert(0, lib)
    env["LD_PRELOAD"] = " ".join(preload)
    if check:
        env["PYALLOC_CHECK"] = check
    if stats_json:
        env["PYALLOC_STATS"] = "json:" + os.path.abspath(stats_json)
    elif stats:
        env["PYALLOC_STATS"] = "1"
    if verbose:
        env["PYALLOC_VERBOSE"] = "1"
    if harden:
        env["PYALLOC_HARDEN"] = "1"
    if profile or profile_rate:
        env["PYALLOC_PROFILE_RATE"] = profile_rate or "512K"
    if profile and profile_at_exit:
        env["PYALLOC_PROFILE"] = os.path.abspath(profile)
    return env


def _exec(argv: List[str], env: Dict[str, str]) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        sys.stderr.write(f"pyalloc: cannot run {argv[0]}: {e.strerror}\n")
        raise SystemExit(127 if isinstance(e, FileNotFoundError) else 126)


def _library() -> str:
    path = _native.shipped_path()
    if path is None:
        sys.stderr.write("pyalloc: the library is missing: reinstall the pyalloc package or set PYALLOC_LIB\n")
        raise SystemExit(2)
    return path


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help(sys.stderr)
        return 2
    if args.command == "lib":
        print(_library())
        return 0
    if args.command == "flamegraph":
        from .flamegraph import main as flamegraph

        return flamegraph(args.args)
    if args.stats and args.stats_json:
        sys.stderr.write("pyalloc: choose one of --stats and --stats-json\n")
        return 2
    suffixes = (".collapsed", ".folded", ".json", ".pb.gz", ".pb")
    if args.profile and not args.profile.endswith(suffixes):
        sys.stderr.write("pyalloc: --profile FILE ends with .collapsed, .pb.gz or .json\n")
        return 2
    env = environment(
        _library(),
        args.check,
        args.stats,
        args.stats_json,
        args.verbose,
        harden=args.harden,
        profile=args.profile,
        profile_rate=args.profile_rate,
        profile_at_exit=args.command == "exec",
    )
    if args.command == "exec":
        cmd = list(args.cmd)
        if cmd and cmd[0] == "--":
            cmd = cmd[1:]
        if not cmd:
            sys.stderr.write("pyalloc exec: no command (pyalloc exec -- CMD [args])\n")
            return 2
        _exec(cmd, env)
    if args.module:
        target = ["-m", *args.module]
    elif args.code:
        target = ["-c", *args.code]
    elif args.script:
        target = list(args.script)
        if target[0] == "--":
            target = target[1:]
    else:
        target = []
    if not target:
        sys.stderr.write("pyalloc run: nothing to run (a script, -m module or -c code)\n")
        return 2
    if args.profile:
        runner = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_profiled.py")
        target = [runner, os.path.abspath(args.profile), *target]
    _exec([sys.executable, *target], env)


if __name__ == "__main__":
    raise SystemExit(main())
