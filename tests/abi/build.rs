//! Generates Rust declarations from the committed C header with bindgen, so
//! that every test here calls cyrsync exactly as a C program would: if the
//! header and the exported functions disagree, these tests fail to link or
//! misbehave.

use std::env;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let header = manifest.join("../../include/cyrsync.h");
    println!("cargo:rerun-if-changed={}", header.display());
    let bindings = bindgen::Builder::default()
        .header(header.to_str().unwrap())
        .allowlist_item("cyrsync_.*")
        .allowlist_item("CYRSYNC_.*")
        .prepend_enum_name(false)
        .default_enum_style(bindgen::EnumVariation::Consts)
        .generate()
        .expect("bindgen parses include/cyrsync.h (is libclang-dev installed?)");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("bindings.rs");
    bindings.write_to_file(out).expect("write bindings");
}
