//! Build script: compiles the small C file that holds the printf-style entry
//! points (stable Rust cannot define C variadic functions) and generates the
//! C header with cbindgen.
//!
//! The header is written to `$OUT_DIR/cyrsync.h`; a unit test compares it with
//! the committed `include/cyrsync.h`. To refresh the committed copy, build
//! with `CYRSYNC_BLESS_HEADER=1` (see README).

use std::env;
use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());

    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=include/cyrsync.h");
    println!("cargo:rerun-if-env-changed=CYRSYNC_BLESS_HEADER");

    let version = env::var("CARGO_PKG_VERSION").unwrap();
    let major = env::var("CARGO_PKG_VERSION_MAJOR").unwrap();
    let minor = env::var("CARGO_PKG_VERSION_MINOR").unwrap();
    let patch = env::var("CARGO_PKG_VERSION_PATCH").unwrap();

    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is readable and valid");
    let version_defines = format!(
        "\n#define CYRSYNC_VERSION \"{version}\"\n\
         #define CYRSYNC_VERSION_MAJOR {major}\n\
         #define CYRSYNC_VERSION_MINOR {minor}\n\
         #define CYRSYNC_VERSION_PATCH {patch}\n"
    );
    config.after_includes =
        Some(config.after_includes.take().unwrap_or_default() + &version_defines);

    let generated = out_dir.join("cyrsync.h");
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write_to_file(&generated);
    println!(
        "cargo:rustc-env=CYRSYNC_GENERATED_HEADER={}",
        generated.display()
    );

    // Compiled against the header just generated: a signature that drifted
    // between the C shim and the Rust exports fails here, at build time.
    cc::Build::new()
        .file("src/ffi/varargs.c")
        .include(&out_dir)
        .warnings(true)
        .extra_warnings(true)
        .flag_if_supported("-Wformat=2")
        .compile("cyrsync_varargs");

    if env::var_os("CYRSYNC_BLESS_HEADER").is_some_and(|v| v == "1") {
        std::fs::copy(&generated, crate_dir.join("include/cyrsync.h"))
            .expect("copy the generated header into include/");
    }
}
