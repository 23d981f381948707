//! Generates `include/pyalloc.h`'s fresh copy with cbindgen into `target/pyalloc.h`;
//! `make header` copies it into `include/`, `make header-check` compares.

fn main() {
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
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
