//! ABI check against CPython's real headers: bindgen reads `Python.h` of every CPython found on
//! this machine and the layouts, enum values and function signatures it reports must equal
//! pyalloc's (`src/abi.rs`, `src/ffi/`).

use pyalloc::abi::{PyMemAllocatorEx, PyObjectArenaAllocator};
use std::mem::{align_of, offset_of, size_of};
use std::path::PathBuf;

/// Include directories holding a Python.h: every pyenv version, then the running python3.
fn python_includes() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let root = std::env::var("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".pyenv")
        });
    if let Ok(versions) = std::fs::read_dir(root.join("versions")) {
        for v in versions.flatten() {
            if let Ok(incs) = std::fs::read_dir(v.path().join("include")) {
                for inc in incs.flatten() {
                    let name = inc.file_name().to_string_lossy().into_owned();
                    // CPython 3.8+ (pyalloc targets the 16-byte-class pymalloc of 3.8 on).
                    let minor = name.strip_prefix("python3.").and_then(|m| {
                        m.trim_end_matches(|c: char| !c.is_ascii_digit())
                            .parse::<u32>()
                            .ok()
                    });
                    if minor.is_some_and(|m| m >= 8) && inc.path().join("Python.h").exists() {
                        found.push(inc.path());
                    }
                }
            }
        }
    }
    if let Ok(out) = std::process::Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['include'])",
        ])
        .output()
    {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if p.join("Python.h").exists() && !found.contains(&p) {
            found.push(p);
        }
    }
    found.sort();
    found
}

/// The number bindgen's layout test states for `label` (e.g. "Size of PyMemAllocatorEx").
fn layout_number(bindings: &str, label: &str) -> usize {
    let key = format!("[\"{label}\"]");
    let at = bindings
        .find(&key)
        .unwrap_or_else(|| panic!("bindgen output lacks {label}"));
    let rest = &bindings[at..];
    let end = rest.find("usize]").expect("layout number");
    let start = rest[..end].rfind(|c: char| !c.is_ascii_digit()).unwrap() + 1;
    rest[start..end].parse().unwrap()
}

/// `name(types) -> ret` of a function as bindgen writes it, with names and paths dropped.
fn signature(bindings: &str, name: &str) -> String {
    let key = format!("pub fn {name}(");
    let at = bindings
        .find(&key)
        .unwrap_or_else(|| panic!("bindgen output lacks {name}"));
    let rest = &bindings[at + key.len()..];
    let decl = &rest[..rest.find(';').unwrap()];
    let decl: String = decl.split_whitespace().collect::<Vec<_>>().join(" ");
    let decl = decl
        .replace("::std::os::raw::", "")
        .replace("::core::ffi::", "");
    let (args, ret) = decl.split_once(')').unwrap();
    let types: Vec<&str> = args
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| a.split_once(':').unwrap().1.trim())
        .collect();
    format!(
        "{name}({}){}",
        types.join(", "),
        ret.trim().replace("->", " ->").trim_end()
    )
}

#[test]
fn layouts_enum_values_and_signatures_match_cpython_headers() {
    let includes = python_includes();
    if includes.is_empty() {
        eprintln!("no CPython headers found: ABI check skipped");
        return;
    }
    let ours = [
        "PyMem_RawMalloc(usize) -> *mut c_void",
        "PyMem_RawCalloc(usize, usize) -> *mut c_void",
        "PyMem_RawRealloc(*mut c_void, usize) -> *mut c_void",
        "PyMem_RawFree(*mut c_void)",
        "PyMem_Malloc(usize) -> *mut c_void",
        "PyMem_Calloc(usize, usize) -> *mut c_void",
        "PyMem_Realloc(*mut c_void, usize) -> *mut c_void",
        "PyMem_Free(*mut c_void)",
        "PyObject_Malloc(usize) -> *mut c_void",
        "PyObject_Calloc(usize, usize) -> *mut c_void",
        "PyObject_Realloc(*mut c_void, usize) -> *mut c_void",
        "PyObject_Free(*mut c_void)",
        "PyMem_GetAllocator(PyMemAllocatorDomain, *mut PyMemAllocatorEx)",
        "PyMem_SetAllocator(PyMemAllocatorDomain, *mut PyMemAllocatorEx)",
        "PyMem_SetupDebugHooks()",
        "PyObject_GetArenaAllocator(*mut PyObjectArenaAllocator)",
        "PyObject_SetArenaAllocator(*mut PyObjectArenaAllocator)",
    ];
    for inc in &includes {
        let b = bindgen::Builder::default()
            .header_contents("abi_check.h", "#include <Python.h>\n")
            .clang_arg(format!("-I{}", inc.display()))
            .allowlist_type("PyMemAllocatorEx|PyObjectArenaAllocator|PyMemAllocatorDomain")
            .allowlist_function("PyMem_.*|PyObject_(Malloc|Calloc|Realloc|Free|GetArenaAllocator|SetArenaAllocator)")
            .layout_tests(true)
            .generate()
            .unwrap_or_else(|e| panic!("bindgen on {}: {e}", inc.display()))
            .to_string();
        let at = inc.display();
        assert_eq!(
            layout_number(&b, "Size of PyMemAllocatorEx"),
            size_of::<PyMemAllocatorEx>(),
            "{at}"
        );
        assert_eq!(
            layout_number(&b, "Alignment of PyMemAllocatorEx"),
            align_of::<PyMemAllocatorEx>(),
            "{at}"
        );
        for (field, off) in [
            ("ctx", offset_of!(PyMemAllocatorEx, ctx)),
            ("malloc", offset_of!(PyMemAllocatorEx, malloc)),
            ("calloc", offset_of!(PyMemAllocatorEx, calloc)),
            ("realloc", offset_of!(PyMemAllocatorEx, realloc)),
            ("free", offset_of!(PyMemAllocatorEx, free)),
        ] {
            assert_eq!(
                layout_number(&b, &format!("Offset of field: PyMemAllocatorEx::{field}")),
                off,
                "{at} {field}"
            );
        }
        assert_eq!(
            layout_number(&b, "Size of PyObjectArenaAllocator"),
            size_of::<PyObjectArenaAllocator>(),
            "{at}"
        );
        for (field, off) in [
            ("ctx", offset_of!(PyObjectArenaAllocator, ctx)),
            ("alloc", offset_of!(PyObjectArenaAllocator, alloc)),
            ("free", offset_of!(PyObjectArenaAllocator, free)),
        ] {
            assert_eq!(
                layout_number(
                    &b,
                    &format!("Offset of field: PyObjectArenaAllocator::{field}")
                ),
                off,
                "{at} {field}"
            );
        }
        for (name, value) in [("RAW", 0), ("MEM", 1), ("OBJ", 2)] {
            let key = format!(
                "PyMemAllocatorDomain_PYMEM_DOMAIN_{name}: PyMemAllocatorDomain = {value};"
            );
            assert!(b.contains(&key), "{at}: {key}");
        }
        assert!(
            b.contains("pub type PyMemAllocatorDomain = c_uint;")
                || b.contains("pub type PyMemAllocatorDomain = ::std::os::raw::c_uint;"),
            "{at}: enum is unsigned int, like our uint32_t"
        );
        for want in ours {
            let name = &want[..want.find('(').unwrap()];
            assert_eq!(signature(&b, name), want, "{at}");
        }
    }
    eprintln!(
        "ABI matches the headers of {} CPython version(s): {includes:?}",
        includes.len()
    );
}
