//! Turning the C caller's pointers into owned values, and ending the
//! shell's forked child.

use std::ffi::{CStr, OsString};
use std::marker::PhantomData;
use std::os::unix::ffi::OsStringExt;

/// A C string's bytes, borrowed; empty for NULL.
///
/// # Safety
///
/// `pointer` is NULL or points to a NUL-terminated string that stays valid
/// and unchanged for `'a`.
pub(crate) unsafe fn bytes<'a>(pointer: *const libc::c_char) -> &'a [u8] {
    if pointer.is_null() {
        return &[];
    }
    // SAFETY: a NUL-terminated string, valid for 'a, by the caller's
    // contract.
    unsafe { CStr::from_ptr(pointer) }.to_bytes()
}

/// The strings of a NULL-terminated array of C strings, borrowed, in
/// order; none for NULL.
#[derive(Clone)]
pub(crate) struct CStrings<'a> {
    /// The next entry, NULL once the terminator has been reached.
    next: *const *const libc::c_char,
    strings: PhantomData<&'a [u8]>,
}

impl CStrings<'_> {
    /// # Safety
    ///
    /// `array` is NULL or points to a NULL-terminated array of
    /// NUL-terminated strings, all of which stay valid and unchanged for
    /// the iterator's lifetime.
    pub(crate) unsafe fn new(array: *const *const libc::c_char) -> Self {
        CStrings {
            next: array,
            strings: PhantomData,
        }
    }
}

impl<'a> Iterator for CStrings<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.next.is_null() {
            return None;
        }
        // SAFETY: `next` points into the array at or before its
        // terminator (`new`'s contract; it never moves past the
        // terminator).
        let entry = unsafe { *self.next };
        if entry.is_null() {
            self.next = std::ptr::null();
            return None;
        }
        // SAFETY: not the terminator, so the next entry is still within
        // the array.
        self.next = unsafe { self.next.add(1) };
        // SAFETY: each entry is a NUL-terminated string valid for 'a.
        Some(unsafe { bytes(entry) })
    }
}

/// Owned copies of a NULL-terminated array of C strings; empty for NULL.
///
/// # Safety
///
/// As for [`CStrings::new`], for the duration of the call.
pub(crate) unsafe fn strings(array: *const *const libc::c_char) -> Vec<OsString> {
    // SAFETY: the caller's contract, passed on.
    unsafe { CStrings::new(array) }
        .map(|string| OsString::from_vec(string.to_vec()))
        .collect()
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

#[cfg(test)]
mod tests {
    use std::ffi::CString;

    use super::*;

    #[test]
    fn c_string_arrays_are_walked_the_same_each_time_and_null_is_empty() {
        let owned = ["zsh", "", "é x"].map(|s| CString::new(s).unwrap());
        let mut array: Vec<*const libc::c_char> = owned.iter().map(|s| s.as_ptr()).collect();
        array.push(std::ptr::null());
        // SAFETY: a NULL-terminated array of NUL-terminated strings that
        // outlive the iterators.
        let strings = unsafe { CStrings::new(array.as_ptr()) };
        let expected: Vec<&[u8]> = vec![b"zsh", b"", "é x".as_bytes()];
        assert_eq!(strings.clone().collect::<Vec<_>>(), expected);
        assert_eq!(strings.clone().count(), 3, "a copy starts from the first");
        let mut walked = strings.clone();
        assert_eq!(walked.by_ref().count(), 3);
        assert_eq!(walked.next(), None, "stays at the end");

        // SAFETY: NULL is allowed.
        assert_eq!(unsafe { CStrings::new(std::ptr::null()) }.count(), 0);
        // SAFETY: NULL is allowed.
        assert_eq!(unsafe { bytes(std::ptr::null()) }, b"");
    }
}
