//! Generates `include/pyalloc.h`'s fresh copy with cbindgen into `target/pyalloc.h`;
//! `make header` copies it into `include/`, `make header-check` compares.
//!
//! Gives the shared library its SONAME, `libpyalloc.so.<major>` (`libpyalloc.so.0`), and puts
//! that name beside it (a symlink to `libpyalloc.so` in `target/<profile>/`) so that programs
//! linked there with `-lpyalloc` (they record the SONAME) find it. `make install` installs
//! `libpyalloc.so.<version>` with both links; `make lib` also rewrites the static archive
//! (Makefile, `lib`).

fn main() {
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    std_cfg();
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("CARGO_PKG_VERSION_MAJOR");
    let soname = format!("libpyalloc.so.{major}");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    soname_link(&soname);
    let config =
        cbindgen::Config::from_file(format!("{crate_dir}/cbindgen.toml")).expect("cbindgen.toml");
    let target_dir =
        std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| format!("{crate_dir}/target"));
    match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
    {
        Ok(bindings) => {
            std::fs::create_dir_all(&target_dir).ok();
            bindings.write_to_file(format!("{target_dir}/pyalloc.h"));
        }
        Err(e) => println!("cargo:warning=cbindgen could not generate the header: {e}"),
    }
}

/// `pyalloc_std`: build with the standard library. The libraries for C programs and CPython are
/// `no_std` with a panic handler of their own (`platform::report`), which keeps std's panic,
/// backtrace and formatting code out of every process. The integration tests (`tests/*.rs`) use
/// std and link this crate, so they need the `std` feature (Makefile: `cargo test --features
/// std`); targets other than x86-64 Linux build with std too (their thread-locals come from it).
fn std_cfg() {
    println!("cargo::rustc-check-cfg=cfg(pyalloc_std)");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if std::env::var_os("CARGO_FEATURE_STD").is_some() || arch != "x86_64" || os != "linux" {
        println!("cargo:rustc-cfg=pyalloc_std");
    }
}

/// `target/<profile>/libpyalloc.so.<major>` -> `libpyalloc.so` (OUT_DIR is
/// `target/<profile>/build/pyalloc-<hash>/out`). Dangling until the library is linked.
fn soname_link(soname: &str) {
    let Some(out) = std::env::var_os("OUT_DIR") else {
        return;
    };
    let Some(profile_dir) = std::path::Path::new(&out).ancestors().nth(3) else {
        return;
    };
    let link = profile_dir.join(soname);
    if std::fs::read_link(&link).is_ok_and(|t| t.as_os_str() == "libpyalloc.so") {
        return;
    }
    std::fs::remove_file(&link).ok();
    if let Err(e) = std::os::unix::fs::symlink("libpyalloc.so", &link) {
        println!(
            "cargo:warning=could not link {} to libpyalloc.so: {e}",
            link.display()
        );
    }
}
