// What the keys of tools_key.rs cover: `include!`d beside it by the build
// scripts, and by core-bridge's test that checks these lists against
// `cargo tree` (`tools_keys_cover_every_workspace_crate_the_tools_use`).

/// The workspace crates the exec wrapper binary is built from.
#[allow(dead_code)] // each build script uses one of the two lists
const WRAPPER_SOURCES: &[&str] = &["exec-wrapper", "protocol"];

/// The workspace crates the sandbox helper binary is built from.
#[allow(dead_code)]
const HELPER_SOURCES: &[&str] = &["network-proxy", "protocol", "sandbox"];

/// What every build depends on besides the crates: dependency versions,
/// profiles, the musl target's flags, and the build scripts' shared files
/// (the helper's build script includes them from `exec-wrapper/`).
const BUILD_INPUTS: &[&str] = &[
    "Cargo.lock",
    "Cargo.toml",
    ".cargo/config.toml",
    "exec-wrapper/static_glibc.rs",
    "exec-wrapper/tools_key.rs",
    "exec-wrapper/tools_sources.rs",
];

/// What precedes the key in each tool's binary: the key's marker and the
/// tool's name, so that another build's tool can be told by what it is.
#[allow(dead_code)]
const WRAPPER_KEY_MARKER: &str = "execgate-tools-key:wrapper:";
#[allow(dead_code)]
const HELPER_KEY_MARKER: &str = "execgate-tools-key:helper:";
