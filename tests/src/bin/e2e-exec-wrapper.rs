//! The exec wrapper, built for the end-to-end tests (see Cargo.toml).
#![no_main]

// The installed wrapper's allocator, so that the suites run it too (with
// debug assertions: alignment included).
#[global_allocator]
static ALLOCATOR: execgate_exec_wrapper::Arena = execgate_exec_wrapper::Arena::new();

/// The key of this build's wrapper, as the installed one carries it
/// (`tests/build.rs`).
static TOOLS_KEY: &str = env!("EXECGATE_WRAPPER_TOOLS_KEY");

#[no_mangle]
extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    // Keeps the key in the binary: nothing else refers to it.
    std::hint::black_box(TOOLS_KEY);
    // SAFETY: the C runtime's own argc and argv.
    unsafe { execgate_exec_wrapper::main_from_c(argc, argv) }
}
