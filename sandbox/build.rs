//! Links the sandbox helper statically (glibc, static-pie), as the exec
//! wrapper is (`exec-wrapper/build.rs`, where the method is explained): it
//! starts once per sandbox, for every sandboxed escalation, and a dynamic
//! one pays the loader each time. Only the binary: the library is linked
//! into the server. Sets the key of the helper's sources, which the binary
//! carries (`exec-wrapper/tools_key.rs`).
include!("../exec-wrapper/static_glibc.rs");
include!("../exec-wrapper/tools_key.rs");
include!("../exec-wrapper/tools_sources.rs");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    let key = tools_key(&workspace_root(), HELPER_SOURCES)?;
    println!("cargo:rustc-env=EXECGATE_TOOLS_KEY={HELPER_KEY_MARKER}{key}");
    link_bins_statically();
    Ok(())
}
