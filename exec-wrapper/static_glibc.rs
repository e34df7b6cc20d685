// Shared by the build scripts of exec-wrapper and sandbox (`include!`d):
// links a package's binaries as glibc static-pie, so that a plain
// `cargo build` makes the programs started on every exec or sandbox start
// without the dynamic loader. See exec-wrapper/build.rs for why this way.
use std::path::PathBuf;
use std::process::Command;

/// What rustc's std asks the linker for on x86_64-unknown-linux-gnu, with
/// the archive that replaces each; `gcc_s` has no archive of its own, its
/// static counterparts are libgcc_eh and libgcc.
const SHADOWED: &[(&str, &[&str])] = &[
    ("gcc_s", &["libgcc_eh.a", "libgcc.a"]),
    ("util", &["libutil.a"]),
    ("rt", &["librt.a"]),
    ("pthread", &["libpthread.a"]),
    ("m", &["libm.a"]),
    ("dl", &["libdl.a"]),
    ("c", &["libc.a"]),
];

/// Links this package's binaries statically; see the build scripts' docs.
fn link_bins_statically() {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target != "x86_64-unknown-linux-gnu" {
        // musl (scripts/build-wrapper) is static already; other targets
        // link as they always did.
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("static-libs");
    if let Err(error) = std::fs::create_dir_all(&out) {
        panic!("cannot create {}: {error}", out.display());
    }
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    for (name, archives) in SHADOWED {
        let paths: Vec<String> = archives
            .iter()
            .map(|archive| archive_path(&compiler, archive))
            .collect();
        let script = format!("GROUP ( {} )\n", paths.join(" "));
        let file = out.join(format!("lib{name}.so"));
        if let Err(error) = std::fs::write(&file, script) {
            panic!("cannot write {}: {error}", file.display());
        }
    }
    println!("cargo:rustc-link-arg-bins=-L{}", out.display());
    println!("cargo:rustc-link-arg-bins=-static-pie");
    // Size (P4 caps the wrapper at 1 MiB; static glibc alone is most of
    // it): a static-pie relocates itself at start from a table of every
    // pointer in its data; packed as RELR (glibc >= 2.36 applies it) that
    // table is 0.5 KiB instead of 40, which also means fewer bytes to read
    // at each start. An option of lld (rustc's default linker here) and
    // of GNU ld >= 2.38.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
}

/// The absolute path of a static archive as the C compiler finds it.
fn archive_path(compiler: &str, archive: &str) -> String {
    let output = Command::new(compiler)
        .arg(format!("-print-file-name={archive}"))
        .output();
    let path = match output {
        Ok(output) if output.status.success() => {
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        }
        Ok(output) => panic!("{compiler} -print-file-name={archive}: {}", output.status),
        Err(error) => panic!("cannot run {compiler}: {error}"),
    };
    // gcc echoes the bare name back when it does not find the file.
    if !path.starts_with('/') || !std::path::Path::new(&path).is_file() {
        panic!(
            "no static {archive} for the exec wrapper (install libc6-dev / gcc): \
             {compiler} found {path:?}"
        );
    }
    path
}
