//! The e2e wrapper and helper are this build's tools, built from the same
//! sources as the installed ones: they carry the same keys
//! (`exec-wrapper/tools_key.rs`), which a session checks its tools for
//! (`core-bridge/src/tools.rs`).
include!("../exec-wrapper/tools_key.rs");
include!("../exec-wrapper/tools_sources.rs");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    let root = workspace_root();
    let wrapper = tools_key(&root, WRAPPER_SOURCES)?;
    let helper = tools_key(&root, HELPER_SOURCES)?;
    println!("cargo:rustc-env=EXECGATE_WRAPPER_TOOLS_KEY={WRAPPER_KEY_MARKER}{wrapper}");
    println!("cargo:rustc-env=EXECGATE_HELPER_TOOLS_KEY={HELPER_KEY_MARKER}{helper}");
    Ok(())
}
