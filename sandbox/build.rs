//! Links the sandbox helper statically (glibc, static-pie), as the exec
//! wrapper is (`exec-wrapper/build.rs`, where the method is explained): it
//! starts once per sandbox, for every sandboxed escalation, and a dynamic
//! one pays the loader each time. Only the binary: the library is linked
//! into the server.
include!("../exec-wrapper/static_glibc.rs");

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../exec-wrapper/static_glibc.rs");
    link_bins_statically();
}
