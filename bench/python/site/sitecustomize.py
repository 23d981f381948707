"""Injected on PYTHONPATH by bench/python/run.py (nothing else imports it).

When PYALLOC_BENCH_STATUS_FILE names a file, write the process's peak and current
memory figures from /proc/self/status (VmHWM, VmRSS, VmPeak, in kB) and its CPU
time (process_time in ns, user and system time in µs) into it at interpreter exit.  VmHWM is the true peak of *this* process; ru_maxrss (and
pyperf's mem_max_rss) can report the parent's peak across exec.
"""
import os

_path = os.environ.get("PYALLOC_BENCH_STATUS_FILE")
if _path:
    import atexit

    def _pyalloc_bench_dump_status(path=_path):
        import resource
        import time
        keep = {"cpu_ns": int(time.process_time() * 1e9)}
        ru = resource.getrusage(resource.RUSAGE_SELF)
        keep["utime_us"] = int(ru.ru_utime * 1e6)
        keep["stime_us"] = int(ru.ru_stime * 1e6)
        with open("/proc/self/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmHWM", "VmRSS", "VmPeak"):
                    keep[key] = int(rest.split()[0])  # kB
        with open(path, "w") as out:
            out.write(" ".join("%s=%d" % kv for kv in sorted(keep.items())) + "\n")

    atexit.register(_pyalloc_bench_dump_status)
