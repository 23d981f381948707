//! The tree's shape, checked: every module of `src/` sits in the layer list of `src/lib.rs`
//! (its `layers:` section, bottom up), uses only modules at or below its own entry (every
//! `crate::` and `super::` path outside `#[cfg(test)]` code is read, `use` groups expanded),
//! opens with a `//!` comment saying what it owns, and holds at most 800 lines of code.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The `layers:` list of `src/lib.rs`: every backquoted module path, in order.
fn layer_list(lib: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut on = false;
    for line in lib.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            if on {
                break;
            }
            continue;
        };
        let doc = doc.trim();
        if doc == "layers:" {
            on = true;
            continue;
        }
        if !on {
            continue;
        }
        if doc.is_empty() {
            break;
        }
        let mut rest = doc;
        while let Some(a) = rest.find('`') {
            let Some(b) = rest[a + 1..].find('`') else {
                break;
            };
            out.push(rest[a + 1..a + 1 + b].to_string());
            rest = &rest[a + 2 + b..];
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/heap/thread/mod.rs` -> `heap::thread`; `src/lib.rs` -> ``.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts.join("::")
}

/// The text without comments, string literals' contents, and `#[cfg(test)]` items.
fn code_only(text: &str) -> String {
    let mut out = String::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let end = text[i + 2..].find("*/").map_or(b.len(), |e| i + 4 + e);
            i = end;
        } else if b[i] == b'"' {
            out.push('"');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            out.push('"');
            i += 1;
        } else if b[i..].starts_with(b"#[cfg(test)]") {
            // Skip the attribute and the item after it (up to its closing brace or semicolon).
            i += "#[cfg(test)]".len();
            let mut depth = 0;
            while i < b.len() {
                match b[i] {
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            i += 1;
                            break;
                        }
                    }
                    b';' if depth == 0 => {
                        i += 1;
                        break;
                    }
                    _ => {}
                }
                i += 1;
            }
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expand the path starting at `s` (after `crate::` or the resolved `super::`), with `use`
/// groups, into full paths appended to `out`.
fn expand(prefix: &str, s: &str, out: &mut Vec<String>) {
    let mut path = prefix.to_string();
    let mut rest = s;
    if let Some(inner) = rest.strip_prefix('{') {
        return group(&path, inner, out);
    }
    loop {
        let n = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        if n > 0 {
            if !path.is_empty() {
                path.push_str("::");
            }
            path.push_str(&rest[..n]);
            rest = &rest[n..];
        }
        if let Some(r) = rest.strip_prefix("::") {
            if let Some(inner) = r.strip_prefix('{') {
                return group(&path, inner, out);
            }
            rest = r;
            if rest.starts_with('*') {
                break;
            }
            continue;
        }
        break;
    }
    out.push(path);
}

/// Expand the `use` group whose text (after its `{`) starts `inner`, under `path`.
fn group(path: &str, inner: &str, out: &mut Vec<String>) {
    let mut depth = 1;
    let mut end = inner.len();
    for (k, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    end = k;
                    break;
                }
            }
            _ => {}
        }
    }
    let group = &inner[..end];
    let mut depth = 0;
    let mut start = 0;
    let mut items = Vec::new();
    for (k, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    for it in items {
        let it = it.trim();
        if it == "self" || it == "*" {
            out.push(path.to_string());
        } else if !it.is_empty() {
            expand(path, it, out);
        }
    }
}

/// Every module path the code refers to, resolved from `module` (the file's module).
fn references(module: &str, code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let before = code[..i].chars().next_back();
        let boundary = before.is_none_or(|c| !is_ident(c) && c != ':' && c != '$');
        if boundary && rest.starts_with("crate::") {
            expand("", &rest["crate::".len()..], &mut out);
            i += "crate::".len();
        } else if boundary && rest.starts_with("super::") {
            let mut base: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
            let mut r = rest;
            while let Some(x) = r.strip_prefix("super::") {
                base.pop();
                r = x;
            }
            expand(&base.join("::"), r, &mut out);
            i += rest.len() - r.len();
        } else {
            i += rest.chars().next().unwrap().len_utf8();
        }
    }
    out
}

/// The layer entry a module path belongs to: the longest entry that is a prefix of it.
fn entry_of<'a>(layers: &'a [String], path: &str) -> Option<(usize, &'a str)> {
    let segs: Vec<&str> = path.split("::").collect();
    (1..=segs.len()).rev().find_map(|n| {
        let p = segs[..n].join("::");
        layers
            .iter()
            .position(|l| *l == p)
            .map(|i| (i, layers[i].as_str()))
    })
}

fn lines_of_code(text: &str) -> usize {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .count()
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let layers = layer_list(&fs::read_to_string(src.join("lib.rs")).unwrap());
    assert!(layers.len() > 10, "no layer list in src/lib.rs: {layers:?}");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut uses: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in &files {
        let module = module_of(&src, f);
        if module.is_empty() {
            continue;
        }
        let text = fs::read_to_string(f).unwrap();
        let name = f.strip_prefix(root).unwrap().display().to_string();
        if !text.trim_start().starts_with("//!") {
            problems.push(format!(
                "{name}: does not open with a //! comment on what it owns"
            ));
        }
        let loc = lines_of_code(&text);
        if loc > 800 {
            problems.push(format!("{name}: {loc} lines of code (at most 800)"));
        }
        let Some((rank, entry)) = entry_of(&layers, &module) else {
            problems.push(format!(
                "{name}: module {module} is in no layer of src/lib.rs"
            ));
            continue;
        };
        for r in references(&module, &code_only(&text)) {
            match entry_of(&layers, &r) {
                None => problems.push(format!("{name}: uses crate::{r}, in no layer")),
                Some((i, used)) if i > rank => problems.push(format!(
                    "{name}: {entry} uses crate::{r}, of the higher layer {used}"
                )),
                Some((_, used)) if used != entry => uses
                    .entry(entry.to_string())
                    .or_default()
                    .push(used.to_string()),
                _ => {}
            }
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
    // The check itself can fail: the heap core's pools, for one, use nothing above them.
    assert!(uses["heap::pool"].iter().all(|u| u == "heap::size_class"));
    assert!(uses["ffi"].iter().any(|u| u == "heap"));
}

#[test]
fn the_reader_finds_upward_uses() {
    let layers: Vec<String> = ["a", "b", "b::c"].iter().map(|s| s.to_string()).collect();
    let code = code_only(
        "use crate::{a, b::{c::X, self}};\n// crate::z\nfn f() { super::super::a::y(); }\n\
         #[cfg(test)]\nmod tests { use crate::z; }\nconst S: &str = \"crate::z\";",
    );
    let refs = references("b::c", &code);
    assert_eq!(refs, ["a", "b::c::X", "b", "a::y"]);
    assert_eq!(entry_of(&layers, "b::c::X"), Some((2, "b::c")));
    assert_eq!(entry_of(&layers, "b::d"), Some((1, "b")));
    assert_eq!(entry_of(&layers, "z"), None);
}
