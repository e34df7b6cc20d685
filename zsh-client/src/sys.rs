//! Turning the C caller's pointers into owned values, and ending the
//! shell's forked child.

use std::ffi::{CStr, OsString};
use std::os::unix::ffi::OsStringExt;

/// An owned copy of a C string; empty for NULL.
///
/// # Safety
///
/// `pointer` is NULL or points to a NUL-terminated string.
pub(crate) unsafe fn string(pointer: *const libc::c_char) -> OsString {
    if pointer.is_null() {
        return OsString::new();
    }
    // SAFETY: a NUL-terminated string by the caller's contract.
    OsString::from_vec(unsafe { CStr::from_ptr(pointer) }.to_bytes().to_vec())
}

/// Owned copies of a NULL-terminated array of C strings; empty for NULL.
///
/// # Safety
///
/// `array` is NULL or points to a NULL-terminated array of NUL-terminated
/// strings.
pub(crate) unsafe fn strings(array: *const *const libc::c_char) -> Vec<OsString> {
    let mut strings = Vec::new();
    if array.is_null() {
        return strings;
    }
    for index in 0.. {
        // SAFETY: the array is NULL-terminated, so every index up to the
        // terminator is within it.
        let entry = unsafe { *array.add(index) };
        if entry.is_null() {
            break;
        }
        // SAFETY: each entry is a NUL-terminated string.
        strings.push(unsafe { string(entry) });
    }
    strings
}

/// Writes an answer through the caller's pointer, unless it is NULL.
///
/// # Safety
///
/// `target` is NULL or valid for writing one `int`.
pub(crate) unsafe fn set(target: *mut libc::c_int, value: libc::c_int) {
    if !target.is_null() {
        // SAFETY: valid for one write by the caller's contract.
        unsafe { *target = value };
    }
}

/// Ends the shell's forked child as zsh's own children end: `_exit`, so
/// that the copies of the shell's stdio buffers are never written twice.
pub(crate) fn exit_now(code: libc::c_int) -> ! {
    // SAFETY: `_exit` has no preconditions.
    unsafe { libc::_exit(code) }
}
