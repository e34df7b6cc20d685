//! The wrapper binary. `no_main`: Rust's start-up would set `SIGPIPE` to
//! ignored, and an ignored signal survives execve, so every program run in
//! place would inherit it. Skipping that start-up also makes the wrapper
//! start faster.
#![no_main]

#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: execgate_exec_wrapper::Arena = execgate_exec_wrapper::Arena::new();

#[cfg(unix)]
#[no_mangle]
extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: the C runtime's own argc and argv.
    unsafe { execgate_exec_wrapper::main_from_c(argc, argv) }
}

/// Windows has no exec hook to be: there, commands go through the
/// restricted-token backend (`execgate run`).
#[cfg(not(unix))]
#[no_mangle]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    eprintln!("execgate-exec-wrapper: the exec hook of the patched zsh exists on Unix only");
    2
}
