"""pytest plugin: serve the test session with pyalloc and fail the test that mixes domains.

    pytest --pyalloc-check=strict

With ``strict``, a domain mix made while a test runs (``PyMem_Free`` of a ``PyObject_Malloc``
block, ``PyObject_Free`` of a ``PyMem_Malloc`` block, ``free()`` of a Python block, an interior
or stale pointer) fails that test, with pyalloc's message (pointer, domains, size) and the
Python traceback of the call that made it; the session goes on (the block is freed by the domain
that owns it, an invalid pointer is left alone). Stock CPython tolerates most of these silently.
``compat`` serves the session with pyalloc, counting mixes without failing tests.

When pyalloc is not yet serving the interpreter, the plugin restarts pytest with the library
preloaded (the same arguments, in the same directory), since an allocator must be in place
before the interpreter allocates anything.
"""
from __future__ import annotations

import os
import sys
from typing import Dict, List, Optional

import pytest

from . import _native, active, mode, stats
from .cli import environment

_REEXEC = "PYALLOC_PYTEST_SERVED"


def pytest_addoption(parser) -> None:
    group = parser.getgroup("pyalloc", "pyalloc memory checks")
    group.addoption(
        "--pyalloc-check",
        choices=("strict", "compat"),
        default=None,
        help="serve the session with pyalloc; strict: a domain mix fails the test that made it "
        "(with the pointer, the domains and the Python traceback); compat: mixes are counted",
    )
    group.addoption(
        "--pyalloc-harden",
        action="store_true",
        default=False,
        help="with --pyalloc-check: also pyalloc's hardened mode (fresh blocks in a shuffled "
        "order, so that a test depending on allocation order shows)",
    )


class _State:
    def __init__(self, check: str) -> None:
        self.check = check
        self.recorder = None
        self.current: Optional[str] = None
        self.by_test: Dict[str, List] = {}
        self.outside: List = []
        # From the reports (pytest-xdist's workers send theirs to the controller).
        self.reported = 0
        self.failed_tests = 0


_state: Optional[_State] = None


def _restart(config, check: str) -> None:
    lib = _native.shipped_path()
    if lib is None:
        raise pytest.UsageError("--pyalloc-check: the pyalloc library is missing (reinstall pyalloc)")
    if os.environ.get(_REEXEC):
        raise pytest.UsageError(
            f"--pyalloc-check: pyalloc was preloaded but does not serve this interpreter "
            f"(mode: {mode()}); run with PYALLOC_VERBOSE=1 to see why"
        )
    main = os.path.basename(sys.argv[0]) if sys.argv else ""
    if not (main.startswith(("pytest", "py.test")) or main == "__main__.py"):
        raise pytest.UsageError(
            "--pyalloc-check: pytest was started from another program; run it as "
            "`pyalloc run -m pytest --pyalloc-check=...` instead"
        )
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        capman.stop_global_capturing()
    env = environment(lib, check=check, harden=bool(config.getoption("pyalloc_harden")))
    env[_REEXEC] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [sys.executable, "-m", "pytest", *config.invocation_params.args]
    os.execve(sys.executable, argv, env)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    check = config.getoption("pyalloc_check")
    if check is not None and not active():
        _restart(config, check)
    if check is not None and config.getoption("pyalloc_harden"):
        if os.environ.get("PYALLOC_HARDEN", "").lower() not in ("1", "true", "yes", "on"):
            raise pytest.UsageError(
                "--pyalloc-harden: pyalloc already serves this interpreter without "
                "PYALLOC_HARDEN=1, which is read at start; run it with PYALLOC_HARDEN=1"
            )
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config) -> None:
    # Every process of the session (pytest-xdist's workers too: they inherit the preload).
    global _state
    check = config.getoption("pyalloc_check", None)
    if check is None or not active():
        return
    lib = _native.handle()
    lib.pyalloc_set_check_mode(0 if check == "strict" else 1)
    _state = _State(check)
    if check == "strict":
        from .checking import Recorder

        _state.recorder = Recorder(_record)


def _record(event) -> None:
    st = _state
    if st is None:
        return
    if st.current is None:
        st.outside.append(event)
    else:
        st.by_test.setdefault(st.current, []).append(event)


def pytest_report_header(config) -> Optional[str]:
    if _state is None:
        return None
    return f"pyalloc: serving this session ({_state.check} checks), library {_native.loaded_path()}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if _state is not None:
        _state.current = item.nodeid
    yield
    if _state is not None:
        _state.current = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    st = _state
    if st is None or st.recorder is None:
        return
    events = st.by_test.pop(item.nodeid, None)
    if not events:
        return
    rep = outcome.get_result()
    text = [f"pyalloc found {len(events)} misuse(s) during {call.when} of {item.nodeid}:"]
    path = str(getattr(item, "path", None) or item.fspath)
    for e in events:
        _trim(e, path)
        text.append("")
        text.append(e.format())
    if rep.longrepr is not None and rep.failed:
        text.append("")
        text.append(str(rep.longrepr))
    rep.outcome = "failed"
    rep.longrepr = "\n".join(text)


def _trim(event, path: str) -> None:
    """Keep the traceback from the test's own file on (pytest's frames above it say nothing)."""
    for i, frame in enumerate(event.stack):
        if frame.filename == path:
            del event.stack[:i]
            return
    del event.stack[:-15]


def pytest_runtest_logreport(report) -> None:
    st = _state
    if st is None or not report.failed:
        return
    text = str(report.longrepr)
    if text.startswith("pyalloc found "):
        try:
            st.reported += int(text.split()[2].split("(")[0])
        except (IndexError, ValueError):
            st.reported += 1
        st.failed_tests += 1


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    st = _state
    if st is None:
        return
    tr = terminalreporter
    try:
        mixes = sum(d.get("mismatched_frees", 0) for d in stats()["domains"].values())
    except Exception:  # the statistics are a courtesy here
        mixes = None
    tr.write_sep("-", "pyalloc")
    if st.check == "strict":
        found = st.reported + len(st.outside)
        tr.write_line(
            f"pyalloc: served this session (strict checks, {_native.loaded_path()}): "
            f"{found} misuse(s) found" + (f" in {st.failed_tests} test(s)" if st.failed_tests else "")
        )
        for e in st.outside:
            tr.write_line("outside any test:")
            tr.write_line(e.format())
    else:
        tr.write_line(f"pyalloc: served this session (compat checks): wrong-domain frees counted: {mixes}")
