//! The keys of the sources the exec wrapper and the sandbox helper are
//! built from (`exec-wrapper/tools_key.rs`): a tool from another build
//! directory is used only when it carries the same (`src/tools.rs`).
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
