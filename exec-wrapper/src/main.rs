//! The wrapper binary. `no_main`: Rust's start-up would set `SIGPIPE` to
//! ignored, and an ignored signal survives execve, so every program run in
//! place would inherit it. Skipping that start-up also makes the wrapper
//! start faster.
#![no_main]

#[global_allocator]
static ALLOCATOR: execgate_exec_wrapper::Arena = execgate_exec_wrapper::Arena::new();

#[no_mangle]
extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: the C runtime's own argc and argv.
    unsafe { execgate_exec_wrapper::main_from_c(argc, argv) }
}
