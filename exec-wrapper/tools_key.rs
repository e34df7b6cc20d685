// Shared by the build scripts of exec-wrapper, sandbox and core-bridge
// (`include!`d): the key of the sources a tool is built from. The wrapper
// and the sandbox helper carry theirs as a marker in the binary; core-bridge
// knows both, and takes a tool from another build directory (the static
// musl build of scripts/build-wrapper) only when the marker there is the
// one of its own sources (core-bridge/src/tools.rs). A stale fast tool is
// then never paired with a newer execgate: it is simply not used. What is
// hashed is listed in tools_sources.rs, included beside this file.
// Paths in full: the file shares its scope with the other include.
use sha2::Digest as _;

/// The key of `crates` (directories of the workspace at `root`) and the
/// build inputs, as hex; tells cargo to run the build script again when
/// any of them changes.
fn tools_key(root: &std::path::Path, crates: &[&str]) -> std::io::Result<String> {
    let mut files = Vec::new();
    for input in BUILD_INPUTS {
        files.push(std::path::PathBuf::from(input));
        println!("cargo:rerun-if-changed={}", root.join(input).display());
    }
    for krate in crates {
        collect_files(root, std::path::Path::new(krate), &mut files)?;
        println!("cargo:rerun-if-changed={}", root.join(krate).display());
    }
    files.sort();
    let mut hasher = sha2::Sha256::new();
    for file in &files {
        let contents = std::fs::read(root.join(file))?;
        // Path and length first, so that no two file lists hash alike.
        let name = file.to_string_lossy();
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((contents.len() as u64).to_le_bytes());
        hasher.update(&contents);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

fn collect_files(root: &std::path::Path, relative: &std::path::Path, files: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(root.join(relative))? {
        let entry = entry?;
        let path = relative.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect_files(root, &path, files)?;
        } else if kind.is_file() {
            files.push(path);
        }
    }
    Ok(())
}

/// The workspace root, from a member's build script.
fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default()).join("..")
}

/// Sets both tools' keys for the crate being built, as
/// `EXECGATE_WRAPPER_TOOLS_KEY` and `EXECGATE_HELPER_TOOLS_KEY`: core-bridge
/// takes tools by them, and the tests' own tools carry them.
#[allow(dead_code)]
fn set_both_tools_keys() -> std::io::Result<()> {
    let root = workspace_root();
    let wrapper = tools_key(&root, WRAPPER_SOURCES)?;
    let helper = tools_key(&root, HELPER_SOURCES)?;
    println!("cargo:rustc-env=EXECGATE_WRAPPER_TOOLS_KEY={WRAPPER_KEY_MARKER}{wrapper}");
    println!("cargo:rustc-env=EXECGATE_HELPER_TOOLS_KEY={HELPER_KEY_MARKER}{helper}");
    Ok(())
}
