//! The wrapper binary. `no_main`: Rust's start-up would set `SIGPIPE` to
//! ignored, and an ignored signal survives execve, so every program run in
//! place would inherit it. Skipping that start-up also makes the wrapper
//! start faster.
#![no_main]

#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: execgate_exec_wrapper::Arena = execgate_exec_wrapper::Arena::new();

/// The key of the sources this binary was built from, which `execgate`
/// looks for in a wrapper from another build directory before it uses it
/// (core-bridge/src/tools.rs).
#[cfg(unix)]
static TOOLS_KEY: &str = env!("EXECGATE_TOOLS_KEY");

#[cfg(unix)]
#[no_mangle]
extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    // Keeps the key in the binary: nothing else refers to it.
    std::hint::black_box(TOOLS_KEY);
    // SAFETY: the C runtime's own argc and argv.
    unsafe { execgate_exec_wrapper::main_from_c(argc, argv) }
}

/// The static glibc build's own `__xpg_strerror_r` and `__assert_fail`
/// (see `describe_errno_into`): defined here, in the binary, never in the
/// library, which is also linked into zsh and the tests, where they would
/// replace the C library's for the whole process.
#[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
mod static_libc {
    #[no_mangle]
    extern "C" fn __xpg_strerror_r(
        errnum: libc::c_int,
        buffer: *mut libc::c_char,
        length: libc::size_t,
    ) -> libc::c_int {
        // SAFETY: the C contract of strerror_r: `buffer` holds `length`
        // writable bytes.
        unsafe { execgate_exec_wrapper::describe_errno_into(errnum, buffer, length) }
    }

    #[no_mangle]
    extern "C" fn __assert_fail(
        _assertion: *const libc::c_char,
        _file: *const libc::c_char,
        _line: libc::c_uint,
        _function: *const libc::c_char,
    ) -> ! {
        execgate_exec_wrapper::abort_on_failed_assertion()
    }
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
