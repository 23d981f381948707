//! The readable statistics (issue 13), in a process of their own so that every figure is
//! known: the text report's summary (pid, live bytes in human units and blocks, peak, mapped,
//! returned to the OS, held for reuse) after known allocations and frees; the JSON report's
//! per-domain and per-class figures, parsed by Python's `json`; the reports written to a file
//! (`PYALLOC_STATS=text:PATH`/`json:PATH`), `%p` expanded to the pid, and a path that cannot
//! be written.
//!
//! One test function: the figures are exact only while nothing else in the process allocates
//! through pyalloc (the test harness itself uses the system allocator).

use pyalloc::ffi::*;
use std::ffi::c_void;
use std::process::Command;

fn report() -> String {
    let mut buf = vec![0u8; 1 << 17];
    // SAFETY: a writable buffer of that length.
    let n = unsafe { pyalloc_stats_report(buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n < buf.len(), "report of {n} bytes truncated");
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

fn json() -> String {
    let mut buf = vec![0u8; 1 << 17];
    // SAFETY: a writable buffer of that length.
    let n = unsafe { pyalloc_stats_json(buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n < buf.len(), "JSON of {n} bytes truncated");
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

/// The summary: the lines before the first empty line.
fn summary(r: &str) -> Vec<&str> {
    r.lines().take_while(|l| !l.is_empty()).collect()
}

/// The summary line of a domain (`  object live ...`), with runs of spaces squeezed to one.
fn domain_line(r: &str, name: &str) -> String {
    let line = summary(r)
        .into_iter()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no summary line for {name} in\n{r}"));
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn summary_line<'a>(r: &'a str, start: &str) -> &'a str {
    summary(r)
        .into_iter()
        .find(|l| l.trim_start().starts_with(start))
        .unwrap_or_else(|| panic!("no summary line starting {start:?} in\n{r}"))
        .trim()
}

/// Run Python's json module over `text` with `check` (a Python expression over `d`, printed).
fn python_json(text: &str, check: &str) -> String {
    let dir = std::env::temp_dir().join(format!("pyalloc-json-{}", std::process::id()));
    std::fs::write(&dir, text).unwrap();
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import json, sys\nd = json.load(open(sys.argv[1]))\nprint({check})"
        ))
        .arg(&dir)
        .output()
        .expect("python3 runs");
    std::fs::remove_file(&dir).unwrap();
    assert!(
        out.status.success(),
        "python3 could not parse the JSON: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn readable_statistics() {
    let pid = std::process::id();
    let r = report();
    let s = summary(&r);
    assert_eq!(s[0], format!("pyalloc 0.1.0 statistics, pid {pid}"), "{r}");
    for d in ["raw", "mem", "object"] {
        assert_eq!(
            domain_line(&r, d),
            format!("{d} live 0 B in 0 blocks, peak 0 B")
        );
    }

    // Known blocks: 1000 objects of 48 bytes (46.9 KiB), 10 mem blocks of 4000 bytes (the
    // 4096 class: 40.0 KiB), 3 raw blocks of 1 MiB (large: 3.0 MiB).
    let objs: Vec<*mut c_void> = (0..1000).map(|_| PyObject_Malloc(48)).collect();
    let mems: Vec<*mut c_void> = (0..10).map(|_| PyMem_Malloc(4000)).collect();
    let raws: Vec<*mut c_void> = (0..3).map(|_| PyMem_RawMalloc(1 << 20)).collect();
    let r = report();
    assert_eq!(
        domain_line(&r, "object"),
        "object live 46.9 KiB in 1000 blocks, peak 46.9 KiB"
    );
    assert_eq!(
        domain_line(&r, "mem"),
        "mem live 40.0 KiB in 10 blocks, peak 40.0 KiB"
    );
    assert_eq!(
        domain_line(&r, "raw"),
        "raw live 3.0 MiB in 3 blocks, peak 3.0 MiB"
    );
    // One arena (1 MiB) and three large mappings of 1 MiB + 16 KiB.
    assert_eq!(
        summary_line(&r, "mapped"),
        "mapped 4.0 MiB now, peak 4.0 MiB"
    );
    assert_eq!(
        summary_line(&r, "returned"),
        "returned to the OS 0 B in all (0 B purged, 0 B unmapped)"
    );
    assert_eq!(
        summary_line(&r, "held"),
        "held for reuse: 0 B of free pools, 0 B of freed large blocks"
    );
    // The tables follow, with the wording that says what the class counts are.
    assert!(r.contains(
        "\nSmall block threshold = 512, in 32 size classes.\n\
         pyalloc 0.1.0: those 32 small classes (16 to 512 bytes, 16 apart) and 28 medium classes\n\
         (640 to 65536 bytes, four per doubling), 60 in all,"
    ));
    assert!(r.contains("\n# object domain (PyObject_Malloc/PyObject_Free)\n"));

    // The JSON has each domain's figures and each class's.
    let j = json();
    assert_eq!(
        python_json(
            &j,
            "[d['pid'], [(k, v['live_blocks'], v['live_bytes'], v['peak_live_bytes'], v['allocations'], v['frees'], v['pools_in_use'] > 0) for k, v in d['domains'].items()]]"
        ),
        format!(
            "[{pid}, [('raw', 3, 3145728, 3145728, 3, 0, False), ('mem', 10, 40960, 40960, 10, 0, True), ('object', 1000, 48000, 48000, 1000, 0, True)]]"
        )
    );
    assert_eq!(
        python_json(
            &j,
            "[[(c['size'], c['live_blocks'], c['live_bytes'], c['allocations'], c['frees']) for c in v['classes']] for v in d['domains'].values()]"
        ),
        "[[], [(4096, 10, 40960, 10, 0)], [(48, 1000, 48000, 1000, 0)]]"
    );

    // Free half the objects and everything else: the peak stays, large mappings go back.
    for (i, &p) in objs.iter().enumerate() {
        if i % 2 == 0 {
            // SAFETY: allocated above, freed once.
            unsafe { PyObject_Free(p) };
        }
    }
    for &p in &mems {
        // SAFETY: allocated above, freed once.
        unsafe { PyMem_Free(p) };
    }
    for &p in &raws {
        // SAFETY: allocated above, freed once.
        unsafe { PyMem_RawFree(p) };
    }
    let r = report();
    assert_eq!(
        domain_line(&r, "object"),
        "object live 23.4 KiB in 500 blocks, peak 46.9 KiB"
    );
    assert_eq!(
        domain_line(&r, "mem"),
        "mem live 0 B in 0 blocks, peak 40.0 KiB"
    );
    assert_eq!(
        domain_line(&r, "raw"),
        "raw live 0 B in 0 blocks, peak 3.0 MiB"
    );
    // Freed once, never mapped again soon after: the large mappings go back at once.
    assert_eq!(
        summary_line(&r, "returned"),
        "returned to the OS 3.0 MiB in all (0 B purged, 3.0 MiB unmapped)"
    );
    assert_eq!(
        summary_line(&r, "mapped"),
        "mapped 1.0 MiB now, peak 4.0 MiB"
    );
    let j = json();
    assert_eq!(
        python_json(
            &j,
            "*([(c['size'], c['live_blocks'], c['allocations'], c['frees']) for c in d['domains'][k]['classes']] for k in ('object', 'mem')), d['bytes_unmapped_total'], d['bytes_returned_total'] == d['bytes_purged_total'] + d['bytes_unmapped_total']"
        ),
        "[(48, 500, 1000, 500)] [(4096, 0, 10, 10)] 3194880 True"
    );

    // The mem pool went back to its arena at the collect; the purge returns the free units.
    pyalloc_collect(1);
    let r = report();
    let returned = summary_line(&r, "returned");
    assert!(
        !returned.contains("(0 B purged") && returned.ends_with(", 3.0 MiB unmapped)"),
        "{returned}"
    );
    assert_eq!(
        summary_line(&r, "held"),
        "held for reuse: 0 B of free pools, 0 B of freed large blocks"
    );
    assert!(r.contains("\nfree pool bytes kept  =                0 (resident, kept for good: up to PYALLOC_PURGE_KEEP = 4.0 MiB)\n"), "{r}");
    assert!(r.contains("\nfree pool bytes held  =                0 (resident beyond PYALLOC_PURGE_KEEP, for the purge delay: 100 ms)\n"), "{r}");

    // The reports into files, `%p` expanded.
    let dir = std::env::temp_dir().join(format!("pyalloc-stats-{pid}"));
    std::fs::create_dir_all(&dir).unwrap();
    let pattern = format!("{}/s-%p-%%.json", dir.display());
    assert!(pyalloc::stats::write_file(pattern.as_bytes(), true));
    let written = std::fs::read_to_string(dir.join(format!("s-{pid}-%.json"))).unwrap();
    assert!(written.ends_with("}\n"));
    assert_eq!(
        python_json(
            &written,
            "d['pid'], d['domains']['object']['live_blocks'], d['domains']['object']['peak_live_bytes']"
        ),
        format!("{pid} 500 48000")
    );
    let pattern = format!("{}/s-%p.txt", dir.display());
    assert!(pyalloc::stats::write_file(pattern.as_bytes(), false));
    let written = std::fs::read_to_string(dir.join(format!("s-{pid}.txt"))).unwrap();
    assert_eq!(
        domain_line(&written, "object"),
        "object live 23.4 KiB in 500 blocks, peak 46.9 KiB"
    );
    assert!(written.contains("\n# memory\n"));
    // A file rewritten is truncated first (the text report is longer than the JSON one).
    let same = format!("{}/same", dir.display());
    assert!(pyalloc::stats::write_file(same.as_bytes(), false));
    assert!(pyalloc::stats::write_file(same.as_bytes(), true));
    assert_eq!(std::fs::read_to_string(&same).unwrap(), json() + "\n");
    // A folder that does not exist: nothing written, false (and one line on stderr).
    let missing = format!("{}/no/such/folder/s.json", dir.display());
    assert!(!pyalloc::stats::write_file(missing.as_bytes(), true));
    std::fs::remove_dir_all(&dir).unwrap();

    for (i, &p) in objs.iter().enumerate() {
        if i % 2 == 1 {
            // SAFETY: allocated above, freed once.
            unsafe { PyObject_Free(p) };
        }
    }
}
