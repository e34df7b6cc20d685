//! Every raw Win32 call of the Windows backend, each behind a small safe
//! function. Memory Windows allocates (`LocalAlloc`) is owned by [`Local`]
//! from the moment it is returned; handles become `OwnedHandle` at once.

use std::ffi::c_void;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle, RawHandle};
use std::ptr;

use windows_sys::Win32::Foundation::{
    GetLastError, LocalFree, SetHandleInformation, ERROR_INSUFFICIENT_BUFFER, ERROR_SUCCESS,
    HANDLE, HANDLE_FLAG_INHERIT, HLOCAL, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSidToSidW, GetNamedSecurityInfoW, SetEntriesInAclW,
    SetNamedSecurityInfoW, SetSecurityInfo, EXPLICIT_ACCESS_W, NO_MULTIPLE_TRUSTEE, SE_FILE_OBJECT,
    SE_WINDOW_OBJECT, TRUSTEE_IS_SID, TRUSTEE_IS_UNKNOWN, TRUSTEE_W,
};
use windows_sys::Win32::Security::{
    AclSizeInformation, CreateRestrictedToken, GetAce, GetAclInformation, GetLengthSid,
    GetTokenInformation, IsTokenRestricted, SetTokenInformation, TokenDefaultDacl, TokenGroups,
    TokenUser, ACE_HEADER, ACL, ACL_SIZE_INFORMATION, DACL_SECURITY_INFORMATION,
    PSECURITY_DESCRIPTOR, PSID, SID_AND_ATTRIBUTES, TOKEN_ADJUST_DEFAULT, TOKEN_ADJUST_PRIVILEGES,
    TOKEN_ADJUST_SESSIONID, TOKEN_ASSIGN_PRIMARY, TOKEN_DEFAULT_DACL, TOKEN_DUPLICATE,
    TOKEN_GROUPS, TOKEN_QUERY, TOKEN_USER,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateDirectoryW, GetFileAttributesW, FILE_ATTRIBUTE_DIRECTORY, INVALID_FILE_ATTRIBUTES,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JobObjectBasicUIRestrictions,
    JobObjectExtendedLimitInformation, SetInformationJobObject, TerminateJobObject,
    JOBOBJECT_BASIC_UI_RESTRICTIONS, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE, JOB_OBJECT_UILIMIT_DESKTOP,
    JOB_OBJECT_UILIMIT_DISPLAYSETTINGS, JOB_OBJECT_UILIMIT_EXITWINDOWS,
    JOB_OBJECT_UILIMIT_GLOBALATOMS, JOB_OBJECT_UILIMIT_HANDLES, JOB_OBJECT_UILIMIT_READCLIPBOARD,
    JOB_OBJECT_UILIMIT_SYSTEMPARAMETERS, JOB_OBJECT_UILIMIT_WRITECLIPBOARD,
};
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
use windows_sys::Win32::System::Pipes::CreatePipe;
use windows_sys::Win32::System::StationsAndDesktops::{CloseDesktop, CreateDesktopW, HDESK};
use windows_sys::Win32::System::SystemInformation::GetSystemDirectoryW;
use windows_sys::Win32::System::SystemServices::SE_GROUP_LOGON_ID;
use windows_sys::Win32::System::Threading::{
    CreateProcessAsUserW, DeleteProcThreadAttributeList, GetCurrentProcess, GetExitCodeProcess,
    InitializeProcThreadAttributeList, OpenProcessToken, ResumeThread, UpdateProcThreadAttribute,
    WaitForSingleObject, CREATE_NO_WINDOW, CREATE_SUSPENDED, CREATE_UNICODE_ENVIRONMENT,
    EXTENDED_STARTUPINFO_PRESENT, LPPROC_THREAD_ATTRIBUTE_LIST, PROCESS_INFORMATION,
    PROC_THREAD_ATTRIBUTE_HANDLE_LIST, STARTF_USESTDHANDLES, STARTUPINFOEXW, STARTUPINFOW,
};
use windows_sys::Win32::UI::Shell::CommandLineToArgvW;

/// A failed Win32 call: which, and its error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Win32Error {
    pub call: &'static str,
    pub code: u32,
}

impl std::fmt::Display for Win32Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} failed: {}",
            self.call,
            std::io::Error::from_raw_os_error(self.code as i32)
        )
    }
}

impl std::error::Error for Win32Error {}

type Result<T> = std::result::Result<T, Win32Error>;

fn last_error(call: &'static str) -> Win32Error {
    // SAFETY: reads the calling thread's last-error value; no arguments.
    let code = unsafe { GetLastError() };
    Win32Error { call, code }
}

fn check(call: &'static str, ok: i32) -> Result<()> {
    if ok == 0 {
        Err(last_error(call))
    } else {
        Ok(())
    }
}

fn check_status(call: &'static str, status: u32) -> Result<()> {
    if status == ERROR_SUCCESS {
        Ok(())
    } else {
        Err(Win32Error { call, code: status })
    }
}

/// NUL-terminated UTF-16.
pub fn nul_terminated(units: &[u16]) -> Vec<u16> {
    let mut owned = units.to_vec();
    owned.push(0);
    owned
}

/// Memory Windows allocated with `LocalAlloc` for us, freed on drop.
pub struct Local<T>(*mut T);

impl<T> Local<T> {
    pub fn as_ptr(&self) -> *mut T {
        self.0
    }
}

impl<T> Drop for Local<T> {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from an API documented to allocate
            // with LocalAlloc, and is freed once, here.
            unsafe { LocalFree(self.0 as HLOCAL) };
        }
    }
}

/// A SID parsed from its string form.
pub fn sid_from_string(text: &str) -> Result<Local<c_void>> {
    let wide = nul_terminated(&text.encode_utf16().collect::<Vec<_>>());
    let mut sid: PSID = ptr::null_mut();
    // SAFETY: `wide` is NUL-terminated and outlives the call; `sid`
    // receives a LocalAlloc'd SID that `Local` frees.
    let ok = unsafe { ConvertStringSidToSidW(wide.as_ptr(), &mut sid) };
    check("ConvertStringSidToSidW", ok)?;
    Ok(Local(sid))
}

/// The string form of a SID.
///
/// # Safety
/// `sid` must point to a valid SID.
pub unsafe fn sid_to_string(sid: PSID) -> Result<String> {
    let mut text: *mut u16 = ptr::null_mut();
    // SAFETY: the caller guarantees `sid`; `text` receives a LocalAlloc'd
    // NUL-terminated string owned by `owned` below.
    let ok = unsafe { ConvertSidToStringSidW(sid, &mut text) };
    check("ConvertSidToStringSidW", ok)?;
    let owned = Local(text);
    let mut length = 0;
    // SAFETY: `text` is NUL-terminated (the call succeeded); we stop at
    // the terminator.
    while unsafe { *owned.as_ptr().add(length) } != 0 {
        length += 1;
    }
    // SAFETY: `length` units were just read as valid.
    let units = unsafe { std::slice::from_raw_parts(owned.as_ptr(), length) };
    Ok(String::from_utf16_lossy(units))
}

/// A copy of a SID in memory we own (4-byte aligned, as SIDs need).
pub struct SidBuf(Vec<u32>);

impl SidBuf {
    /// # Safety
    /// `sid` must point to a valid SID.
    unsafe fn copy_of(sid: PSID) -> SidBuf {
        // SAFETY: the caller guarantees a valid SID.
        let length = unsafe { GetLengthSid(sid) } as usize;
        let mut buffer = vec![0u32; length.div_ceil(4)];
        // SAFETY: `buffer` holds at least `length` bytes; the regions do
        // not overlap.
        unsafe {
            ptr::copy_nonoverlapping(sid as *const u8, buffer.as_mut_ptr() as *mut u8, length)
        };
        SidBuf(buffer)
    }

    pub fn as_psid(&self) -> PSID {
        self.0.as_ptr() as PSID
    }
}

/// This process's primary token, with the rights a restricted copy needs.
pub fn open_process_token() -> Result<OwnedHandle> {
    let mut token: HANDLE = ptr::null_mut();
    let access = TOKEN_DUPLICATE
        | TOKEN_QUERY
        | TOKEN_ASSIGN_PRIMARY
        | TOKEN_ADJUST_DEFAULT
        | TOKEN_ADJUST_SESSIONID
        | TOKEN_ADJUST_PRIVILEGES;
    // SAFETY: the pseudo-handle of the current process needs no closing;
    // `token` receives a new handle owned at once.
    let ok = unsafe { OpenProcessToken(GetCurrentProcess(), access, &mut token) };
    check("OpenProcessToken", ok)?;
    // SAFETY: a fresh handle nothing else owns.
    Ok(unsafe { OwnedHandle::from_raw_handle(token as RawHandle) })
}

/// A restricted copy of `token`.
pub fn create_restricted_token(
    token: &OwnedHandle,
    flags: u32,
    restricting: &[Local<c_void>],
) -> Result<OwnedHandle> {
    let sids: Vec<SID_AND_ATTRIBUTES> = restricting
        .iter()
        .map(|sid| SID_AND_ATTRIBUTES {
            Sid: sid.as_ptr(),
            Attributes: 0,
        })
        .collect();
    let mut restricted: HANDLE = ptr::null_mut();
    let count = u32::try_from(sids.len()).map_err(|_| Win32Error {
        call: "CreateRestrictedToken",
        code: 87,
    })?;
    // SAFETY: `token` is a valid token handle; `sids` and the SIDs it
    // points to outlive the call; `restricted` receives a new handle.
    let ok = unsafe {
        CreateRestrictedToken(
            token.as_raw_handle() as HANDLE,
            flags,
            0,
            ptr::null(),
            0,
            ptr::null(),
            count,
            sids.as_ptr(),
            &mut restricted,
        )
    };
    check("CreateRestrictedToken", ok)?;
    // SAFETY: a fresh handle nothing else owns.
    Ok(unsafe { OwnedHandle::from_raw_handle(restricted as RawHandle) })
}

/// Whether Windows considers `token` restricted (Wine answers no).
pub fn is_token_restricted(token: &OwnedHandle) -> bool {
    // SAFETY: `token` is a valid token handle.
    unsafe { IsTokenRestricted(token.as_raw_handle() as HANDLE) != 0 }
}

/// Whether this process runs under Wine: its `ntdll.dll` exports
/// `wine_get_version`, which Windows' never does.
pub fn running_under_wine() -> bool {
    let name = nul_terminated(&"ntdll.dll".encode_utf16().collect::<Vec<u16>>());
    // SAFETY: a NUL-terminated name; the module handle is not owned (no
    // reference is taken), and ntdll stays loaded for the process's life.
    let ntdll = unsafe { GetModuleHandleW(name.as_ptr()) };
    if ntdll.is_null() {
        return false;
    }
    // SAFETY: a valid module handle and a NUL-terminated ANSI name; the
    // returned pointer is only tested, never called.
    unsafe { GetProcAddress(ntdll, c"wine_get_version".as_ptr().cast()) }.is_some()
}

/// One token information class, in a buffer aligned for its structures.
fn token_information(token: &OwnedHandle, class: i32) -> Result<Vec<u64>> {
    let mut needed = 0u32;
    // SAFETY: a size query: no buffer, `needed` receives the size.
    unsafe {
        GetTokenInformation(
            token.as_raw_handle() as HANDLE,
            class,
            ptr::null_mut(),
            0,
            &mut needed,
        )
    };
    // SAFETY: reads the last-error value of the query above.
    if needed == 0 || unsafe { GetLastError() } != ERROR_INSUFFICIENT_BUFFER {
        return Err(last_error("GetTokenInformation"));
    }
    let mut buffer = vec![0u64; (needed as usize).div_ceil(8)];
    // SAFETY: `buffer` holds `needed` bytes, 8-byte aligned.
    let ok = unsafe {
        GetTokenInformation(
            token.as_raw_handle() as HANDLE,
            class,
            buffer.as_mut_ptr() as *mut c_void,
            needed,
            &mut needed,
        )
    };
    check("GetTokenInformation", ok)?;
    Ok(buffer)
}

/// The token's user SID.
pub fn token_user(token: &OwnedHandle) -> Result<SidBuf> {
    let buffer = token_information(token, TokenUser)?;
    // SAFETY: the buffer holds a TOKEN_USER whose SID points into it.
    unsafe {
        let user = &*(buffer.as_ptr() as *const TOKEN_USER);
        Ok(SidBuf::copy_of(user.User.Sid))
    }
}

/// The token's logon SID (`S-1-5-5-x-y`), if it has one.
pub fn token_logon_sid(token: &OwnedHandle) -> Result<Option<SidBuf>> {
    let buffer = token_information(token, TokenGroups)?;
    // SAFETY: the buffer holds a TOKEN_GROUPS with `GroupCount` entries
    // (a flexible array) whose SIDs point into the buffer.
    unsafe {
        let groups = &*(buffer.as_ptr() as *const TOKEN_GROUPS);
        let entries =
            std::slice::from_raw_parts(groups.Groups.as_ptr(), groups.GroupCount as usize);
        let logon_flag = SE_GROUP_LOGON_ID as u32;
        Ok(entries
            .iter()
            .find(|entry| entry.Attributes & logon_flag == logon_flag)
            .map(|entry| SidBuf::copy_of(entry.Sid)))
    }
}

/// One ACE to compose: who, what, allow or deny, inherited how.
pub struct AceRequest {
    pub sid: PSID,
    pub mask: u32,
    pub deny: bool,
    pub inheritance: u32,
    /// Remove every explicit ACE of this SID instead.
    pub revoke: bool,
}

/// `old` with `requests` merged in, as `SetEntriesInAclW` orders them
/// (denies before allows).
///
/// # Safety
/// Each request's SID must be valid; `old` null or a valid ACL.
pub unsafe fn set_entries_in_acl(requests: &[AceRequest], old: *const ACL) -> Result<Local<ACL>> {
    use windows_sys::Win32::Security::Authorization::{DENY_ACCESS, GRANT_ACCESS, REVOKE_ACCESS};
    let entries: Vec<EXPLICIT_ACCESS_W> = requests
        .iter()
        .map(|request| EXPLICIT_ACCESS_W {
            grfAccessPermissions: request.mask,
            grfAccessMode: if request.revoke {
                REVOKE_ACCESS
            } else if request.deny {
                DENY_ACCESS
            } else {
                GRANT_ACCESS
            },
            grfInheritance: request.inheritance,
            Trustee: TRUSTEE_W {
                pMultipleTrustee: ptr::null_mut(),
                MultipleTrusteeOperation: NO_MULTIPLE_TRUSTEE,
                TrusteeForm: TRUSTEE_IS_SID,
                TrusteeType: TRUSTEE_IS_UNKNOWN,
                ptstrName: request.sid as *mut u16,
            },
        })
        .collect();
    let mut acl: *mut ACL = ptr::null_mut();
    let count = u32::try_from(entries.len()).map_err(|_| Win32Error {
        call: "SetEntriesInAclW",
        code: 87,
    })?;
    // SAFETY: `entries` and the SIDs they name outlive the call (the
    // caller guarantees the SIDs); `old` is null or valid; `acl` receives
    // a LocalAlloc'd ACL owned by `Local`.
    let status = unsafe { SetEntriesInAclW(count, entries.as_ptr(), old, &mut acl) };
    check_status("SetEntriesInAclW", status)?;
    Ok(Local(acl))
}

/// An ACE as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AceRecord {
    /// `ACCESS_ALLOWED_ACE_TYPE` (0) or `ACCESS_DENIED_ACE_TYPE` (1); other
    /// types are reported with their number.
    pub ace_type: u8,
    pub flags: u8,
    pub mask: u32,
    pub sid: String,
}

/// The ACEs of `acl`, in order, read with `GetAce`.
///
/// # Safety
/// `acl` must be null (no DACL) or a valid ACL.
pub unsafe fn acl_entries(acl: *const ACL) -> Result<Vec<AceRecord>> {
    if acl.is_null() {
        return Ok(Vec::new());
    }
    let mut size = ACL_SIZE_INFORMATION {
        AceCount: 0,
        AclBytesInUse: 0,
        AclBytesFree: 0,
    };
    // SAFETY: `acl` is valid (caller); `size` is the structure the class
    // asks for.
    let ok = unsafe {
        GetAclInformation(
            acl,
            &mut size as *mut ACL_SIZE_INFORMATION as *mut c_void,
            std::mem::size_of::<ACL_SIZE_INFORMATION>() as u32,
            AclSizeInformation,
        )
    };
    check("GetAclInformation", ok)?;
    let mut records = Vec::with_capacity(size.AceCount as usize);
    for index in 0..size.AceCount {
        let mut ace: *mut c_void = ptr::null_mut();
        // SAFETY: `index` is below the ACE count just read.
        let ok = unsafe { GetAce(acl, index, &mut ace) };
        check("GetAce", ok)?;
        // SAFETY: every ACE starts with an ACE_HEADER; allowed and denied
        // ACEs (the only types whose SID we read) are a header, a mask and
        // the SID.
        unsafe {
            let header = &*(ace as *const ACE_HEADER);
            let mask = *((ace as *const u8).add(4) as *const u32);
            let sid = if header.AceType <= 1 {
                sid_to_string((ace as *mut u8).add(8) as PSID)?
            } else {
                String::new()
            };
            records.push(AceRecord {
                ace_type: header.AceType,
                flags: header.AceFlags,
                mask,
                sid,
            });
        }
    }
    Ok(records)
}

/// A file's security descriptor and, inside it, its DACL.
pub struct NamedDacl {
    _descriptor: Local<c_void>,
    pub dacl: *mut ACL,
}

pub fn named_dacl(path: &[u16]) -> Result<NamedDacl> {
    let path = nul_terminated(path);
    let mut dacl: *mut ACL = ptr::null_mut();
    let mut descriptor: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: `path` is NUL-terminated; `dacl` points into `descriptor`,
    // which `NamedDacl` keeps alive and frees.
    let status = unsafe {
        GetNamedSecurityInfoW(
            path.as_ptr(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION,
            ptr::null_mut(),
            ptr::null_mut(),
            &mut dacl,
            ptr::null_mut(),
            &mut descriptor,
        )
    };
    check_status("GetNamedSecurityInfoW", status)?;
    Ok(NamedDacl {
        _descriptor: Local(descriptor),
        dacl,
    })
}

pub fn set_named_dacl(path: &[u16], dacl: &Local<ACL>) -> Result<()> {
    let path = nul_terminated(path);
    // SAFETY: `path` is NUL-terminated and `dacl` a valid ACL; the name is
    // only read despite the mutable pointer type.
    let status = unsafe {
        SetNamedSecurityInfoW(
            path.as_ptr(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION,
            ptr::null_mut(),
            ptr::null_mut(),
            dacl.as_ptr(),
            ptr::null(),
        )
    };
    check_status("SetNamedSecurityInfoW", status)
}

/// What is at `path`: `None` when nothing, else whether a directory.
pub fn file_kind(path: &[u16]) -> Option<bool> {
    let path = nul_terminated(path);
    // SAFETY: `path` is NUL-terminated.
    let attributes = unsafe { GetFileAttributesW(path.as_ptr()) };
    (attributes != INVALID_FILE_ATTRIBUTES).then_some(attributes & FILE_ATTRIBUTE_DIRECTORY != 0)
}

pub fn create_directory(path: &[u16]) -> Result<()> {
    let path = nul_terminated(path);
    // SAFETY: `path` is NUL-terminated; default security.
    let ok = unsafe { CreateDirectoryW(path.as_ptr(), ptr::null()) };
    check("CreateDirectoryW", ok)
}

/// Sets the default DACL of `token` (for objects its processes create
/// without one).
pub fn set_default_dacl(token: &OwnedHandle, dacl: &Local<ACL>) -> Result<()> {
    let info = TOKEN_DEFAULT_DACL {
        DefaultDacl: dacl.as_ptr(),
    };
    // SAFETY: `token` is valid with TOKEN_ADJUST_DEFAULT; `info` points at
    // a valid ACL for the duration of the call.
    let ok = unsafe {
        SetTokenInformation(
            token.as_raw_handle() as HANDLE,
            TokenDefaultDacl,
            &info as *const TOKEN_DEFAULT_DACL as *const c_void,
            std::mem::size_of::<TOKEN_DEFAULT_DACL>() as u32,
        )
    };
    check("SetTokenInformation(TokenDefaultDacl)", ok)
}

/// An anonymous pipe: (read end, write end), neither inheritable.
pub fn pipe() -> Result<(OwnedHandle, OwnedHandle)> {
    let mut read: HANDLE = ptr::null_mut();
    let mut write: HANDLE = ptr::null_mut();
    // SAFETY: default security (not inheritable); both handles are owned
    // at once.
    let ok = unsafe { CreatePipe(&mut read, &mut write, ptr::null(), 0) };
    check("CreatePipe", ok)?;
    // SAFETY: fresh handles nothing else owns.
    Ok(unsafe {
        (
            OwnedHandle::from_raw_handle(read as RawHandle),
            OwnedHandle::from_raw_handle(write as RawHandle),
        )
    })
}

/// Makes `handle` inheritable: only ever the child's pipe ends, which the
/// handle list then names explicitly.
pub fn set_inheritable(handle: &OwnedHandle) -> Result<()> {
    // SAFETY: `handle` is valid.
    let ok = unsafe {
        SetHandleInformation(
            handle.as_raw_handle() as HANDLE,
            HANDLE_FLAG_INHERIT,
            HANDLE_FLAG_INHERIT,
        )
    };
    check("SetHandleInformation", ok)
}

/// A job object that kills every process in it when its last handle
/// closes.
pub fn kill_on_close_job() -> Result<OwnedHandle> {
    // SAFETY: an unnamed job with default security.
    let job = unsafe { CreateJobObjectW(ptr::null(), ptr::null()) };
    if job.is_null() {
        return Err(last_error("CreateJobObjectW"));
    }
    // SAFETY: a fresh handle nothing else owns.
    let job = unsafe { OwnedHandle::from_raw_handle(job as RawHandle) };
    // SAFETY: a plain structure of numbers; all zero is valid.
    let mut limits: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
    limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
    // SAFETY: `limits` is the structure this class takes.
    let ok = unsafe {
        SetInformationJobObject(
            job.as_raw_handle() as HANDLE,
            JobObjectExtendedLimitInformation,
            &limits as *const JOBOBJECT_EXTENDED_LIMIT_INFORMATION as *const c_void,
            std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
        )
    };
    check("SetInformationJobObject", ok)?;
    let ui = JOBOBJECT_BASIC_UI_RESTRICTIONS {
        UIRestrictionsClass: JOB_UI_LIMITS,
    };
    // SAFETY: `ui` is the structure this class takes.
    let ok = unsafe {
        SetInformationJobObject(
            job.as_raw_handle() as HANDLE,
            JobObjectBasicUIRestrictions,
            &ui as *const JOBOBJECT_BASIC_UI_RESTRICTIONS as *const c_void,
            std::mem::size_of::<JOBOBJECT_BASIC_UI_RESTRICTIONS>() as u32,
        )
    };
    check("SetInformationJobObject(UI restrictions)", ok)?;
    Ok(job)
}

/// What the job's processes may not do to the user's session even outside
/// the private desktop (which is skipped under SSH): switch or create
/// desktops, change display settings, log off or shut down, use the
/// global atom table, use window handles of processes outside the job,
/// read or write the clipboard, change system parameters.
pub const JOB_UI_LIMITS: u32 = JOB_OBJECT_UILIMIT_DESKTOP
    | JOB_OBJECT_UILIMIT_DISPLAYSETTINGS
    | JOB_OBJECT_UILIMIT_EXITWINDOWS
    | JOB_OBJECT_UILIMIT_GLOBALATOMS
    | JOB_OBJECT_UILIMIT_HANDLES
    | JOB_OBJECT_UILIMIT_READCLIPBOARD
    | JOB_OBJECT_UILIMIT_WRITECLIPBOARD
    | JOB_OBJECT_UILIMIT_SYSTEMPARAMETERS;

/// The UI restrictions a job carries, as Windows reports them (for the
/// tests: Wine cannot report them).
#[cfg(test)]
pub fn job_ui_limits(job: &OwnedHandle) -> Result<u32> {
    use windows_sys::Win32::System::JobObjects::QueryInformationJobObject;
    let mut ui = JOBOBJECT_BASIC_UI_RESTRICTIONS {
        UIRestrictionsClass: 0,
    };
    // SAFETY: `ui` is the structure this class fills; no length wanted back.
    let ok = unsafe {
        QueryInformationJobObject(
            job.as_raw_handle() as HANDLE,
            JobObjectBasicUIRestrictions,
            &mut ui as *mut JOBOBJECT_BASIC_UI_RESTRICTIONS as *mut c_void,
            std::mem::size_of::<JOBOBJECT_BASIC_UI_RESTRICTIONS>() as u32,
            ptr::null_mut(),
        )
    };
    check("QueryInformationJobObject(UI restrictions)", ok)?;
    Ok(ui.UIRestrictionsClass)
}

pub fn assign_to_job(job: &OwnedHandle, process: &OwnedHandle) -> Result<()> {
    // SAFETY: both handles are valid.
    let ok = unsafe {
        AssignProcessToJobObject(
            job.as_raw_handle() as HANDLE,
            process.as_raw_handle() as HANDLE,
        )
    };
    check("AssignProcessToJobObject", ok)
}

pub fn terminate_job(job: &OwnedHandle, code: u32) -> Result<()> {
    // SAFETY: `job` is valid.
    let ok = unsafe { TerminateJobObject(job.as_raw_handle() as HANDLE, code) };
    check("TerminateJobObject", ok)
}

pub fn resume_thread(thread: &OwnedHandle) -> Result<()> {
    // SAFETY: `thread` is a valid thread handle.
    let previous = unsafe { ResumeThread(thread.as_raw_handle() as HANDLE) };
    if previous == u32::MAX {
        return Err(last_error("ResumeThread"));
    }
    Ok(())
}

/// Wait without a time limit.
pub const WAIT_FOREVER: u32 = windows_sys::Win32::System::Threading::INFINITE;

/// Waits for `handle` to be signalled: true when it was, false on
/// timeout.
pub fn wait(handle: &OwnedHandle, milliseconds: u32) -> Result<bool> {
    // SAFETY: `handle` is a valid waitable handle.
    let event = unsafe { WaitForSingleObject(handle.as_raw_handle() as HANDLE, milliseconds) };
    match event {
        WAIT_OBJECT_0 => Ok(true),
        WAIT_TIMEOUT => Ok(false),
        _ => Err(last_error("WaitForSingleObject")),
    }
}

pub fn exit_code(process: &OwnedHandle) -> Result<u32> {
    let mut code = 0u32;
    // SAFETY: `process` is a valid process handle.
    let ok = unsafe { GetExitCodeProcess(process.as_raw_handle() as HANDLE, &mut code) };
    check("GetExitCodeProcess", ok)?;
    Ok(code)
}

/// A desktop we created, closed on drop.
pub struct Desktop(HDESK);

impl Drop for Desktop {
    fn drop(&mut self) {
        // SAFETY: a desktop handle we own, closed once.
        unsafe { CloseDesktop(self.0) };
    }
}

/// Creates desktop `name` in the current window station and sets its DACL.
pub fn create_desktop(name: &[u16], dacl: &Local<ACL>) -> Result<Desktop> {
    use windows_sys::Win32::Storage::FileSystem::{READ_CONTROL, WRITE_DAC};
    use windows_sys::Win32::System::StationsAndDesktops::{
        DESKTOP_CREATEMENU, DESKTOP_CREATEWINDOW, DESKTOP_ENUMERATE, DESKTOP_HOOKCONTROL,
        DESKTOP_READOBJECTS, DESKTOP_WRITEOBJECTS,
    };
    let name = nul_terminated(name);
    let access = DESKTOP_CREATEMENU
        | DESKTOP_CREATEWINDOW
        | DESKTOP_ENUMERATE
        | DESKTOP_HOOKCONTROL
        | DESKTOP_READOBJECTS
        | DESKTOP_WRITEOBJECTS
        | READ_CONTROL
        | WRITE_DAC;
    // SAFETY: `name` is NUL-terminated; no device or mode; default
    // security until the DACL is set below.
    let desktop = unsafe {
        CreateDesktopW(
            name.as_ptr(),
            ptr::null(),
            ptr::null(),
            0,
            access,
            ptr::null(),
        )
    };
    if desktop.is_null() {
        return Err(last_error("CreateDesktopW"));
    }
    let desktop = Desktop(desktop);
    // SAFETY: `desktop` is a valid desktop handle; `dacl` a valid ACL.
    let status = unsafe {
        SetSecurityInfo(
            desktop.0 as HANDLE,
            SE_WINDOW_OBJECT,
            DACL_SECURITY_INFORMATION,
            ptr::null_mut(),
            ptr::null_mut(),
            dacl.as_ptr(),
            ptr::null(),
        )
    };
    check_status("SetSecurityInfo(desktop)", status)?;
    Ok(desktop)
}

/// A started, still suspended process.
pub struct Spawned {
    pub process: OwnedHandle,
    pub thread: OwnedHandle,
    pub pid: u32,
}

/// What `CreateProcessAsUserW` is given.
pub struct SpawnRequest<'a> {
    /// A primary token; `None` runs with this process's own token.
    pub token: Option<&'a OwnedHandle>,
    pub application: Option<&'a [u16]>,
    pub command_line: &'a [u16],
    /// A CREATE_UNICODE_ENVIRONMENT block (already terminated).
    pub environment: &'a [u16],
    pub current_directory: &'a [u16],
    /// `winsta0\NAME`, or `None` for the caller's desktop.
    pub desktop: Option<&'a [u16]>,
    pub stdin: &'a OwnedHandle,
    pub stdout: &'a OwnedHandle,
    pub stderr: &'a OwnedHandle,
}

/// Starts a process suspended, inheriting exactly the three standard
/// handles (`PROC_THREAD_ATTRIBUTE_HANDLE_LIST`), which must be
/// inheritable.
pub fn spawn_suspended(request: &SpawnRequest<'_>) -> Result<Spawned> {
    let handles: [HANDLE; 3] = [
        request.stdin.as_raw_handle() as HANDLE,
        request.stdout.as_raw_handle() as HANDLE,
        request.stderr.as_raw_handle() as HANDLE,
    ];
    let mut size = 0usize;
    // SAFETY: a size query for a one-attribute list.
    unsafe { InitializeProcThreadAttributeList(ptr::null_mut(), 1, 0, &mut size) };
    let mut storage = vec![0u64; size.div_ceil(8)];
    let list = storage.as_mut_ptr() as LPPROC_THREAD_ATTRIBUTE_LIST;
    // SAFETY: `storage` holds `size` bytes, aligned.
    let ok = unsafe { InitializeProcThreadAttributeList(list, 1, 0, &mut size) };
    check("InitializeProcThreadAttributeList", ok)?;
    struct ListGuard(LPPROC_THREAD_ATTRIBUTE_LIST);
    impl Drop for ListGuard {
        fn drop(&mut self) {
            // SAFETY: the list was initialized and is deleted once.
            unsafe { DeleteProcThreadAttributeList(self.0) };
        }
    }
    let _guard = ListGuard(list);
    // SAFETY: `handles` outlives the list's use in CreateProcessAsUserW
    // below (same scope).
    let ok = unsafe {
        UpdateProcThreadAttribute(
            list,
            0,
            PROC_THREAD_ATTRIBUTE_HANDLE_LIST as usize,
            handles.as_ptr() as *const c_void,
            std::mem::size_of_val(&handles),
            ptr::null_mut(),
            ptr::null(),
        )
    };
    check("UpdateProcThreadAttribute", ok)?;

    let mut desktop = request.desktop.map(nul_terminated);
    // SAFETY: plain structures; zero is their documented initial state.
    let mut startup: STARTUPINFOEXW = unsafe { std::mem::zeroed() };
    startup.StartupInfo = STARTUPINFOW {
        cb: std::mem::size_of::<STARTUPINFOEXW>() as u32,
        dwFlags: STARTF_USESTDHANDLES,
        hStdInput: handles[0],
        hStdOutput: handles[1],
        hStdError: handles[2],
        lpDesktop: desktop
            .as_mut()
            .map_or(ptr::null_mut(), |name| name.as_mut_ptr()),
        ..startup.StartupInfo
    };
    startup.lpAttributeList = list;
    let application = request.application.map(nul_terminated);
    // CreateProcess may write into the command line.
    let mut command_line = nul_terminated(request.command_line);
    let directory = nul_terminated(request.current_directory);
    // SAFETY: plain structure filled by the call.
    let mut info: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
    let mut flags = CREATE_SUSPENDED | CREATE_UNICODE_ENVIRONMENT | EXTENDED_STARTUPINFO_PRESENT;
    if request.token.is_some() {
        // A hidden console of its own, not the caller's: attached to the
        // caller's, a sandboxed child could queue keystrokes into its input
        // (`WriteConsoleInputW` on `CONIN$`, Windows' `TIOCSTI`) for the
        // caller's shell to run after execgate ends, or write escape
        // sequences to its terminal past the pipes. Its standard streams
        // stay the pipes. (Not `DETACHED_PROCESS`: each console program it
        // started would then get a console window of its own.)
        flags |= CREATE_NO_WINDOW;
    }
    // SAFETY: every pointer is valid for the call: NUL-terminated strings,
    // a terminated environment block, the startup structure with its
    // initialized attribute list; the returned handles are owned below.
    let ok = unsafe {
        CreateProcessAsUserW(
            request
                .token
                .map_or(ptr::null_mut(), |token| token.as_raw_handle() as HANDLE),
            application
                .as_ref()
                .map_or(ptr::null(), |name| name.as_ptr()),
            command_line.as_mut_ptr(),
            ptr::null(),
            ptr::null(),
            1,
            flags,
            request.environment.as_ptr() as *const c_void,
            directory.as_ptr(),
            &startup.StartupInfo,
            &mut info,
        )
    };
    check("CreateProcessAsUserW", ok)?;
    // SAFETY: fresh handles nothing else owns.
    let (process, thread) = unsafe {
        (
            OwnedHandle::from_raw_handle(info.hProcess as RawHandle),
            OwnedHandle::from_raw_handle(info.hThread as RawHandle),
        )
    };
    Ok(Spawned {
        process,
        thread,
        pid: info.dwProcessId,
    })
}

/// `CommandLineToArgvW`'s split of `line` (the reference the planner's
/// quoting is checked against).
pub fn command_line_to_argv(line: &[u16]) -> Result<Vec<Vec<u16>>> {
    let line = nul_terminated(line);
    let mut count = 0i32;
    // SAFETY: `line` is NUL-terminated; the result is one LocalAlloc'd
    // block owned by `block`.
    let argv = unsafe { CommandLineToArgvW(line.as_ptr(), &mut count) };
    if argv.is_null() {
        return Err(last_error("CommandLineToArgvW"));
    }
    let block = Local(argv);
    let mut out = Vec::new();
    for index in 0..usize::try_from(count).unwrap_or(0) {
        // SAFETY: `count` NUL-terminated strings follow in the block.
        unsafe {
            let argument = *block.as_ptr().add(index);
            let mut length = 0;
            while *argument.add(length) != 0 {
                length += 1;
            }
            out.push(std::slice::from_raw_parts(argument, length).to_vec());
        }
    }
    Ok(out)
}

/// The system directory (`%SystemRoot%\System32`), from Windows itself,
/// not from the environment.
pub fn system_directory() -> Result<Vec<u16>> {
    let mut buffer = vec![0u16; 260];
    loop {
        let capacity = u32::try_from(buffer.len()).unwrap_or(u32::MAX);
        // SAFETY: `buffer` holds `capacity` writable units.
        let length = unsafe { GetSystemDirectoryW(buffer.as_mut_ptr(), capacity) };
        if length == 0 {
            return Err(last_error("GetSystemDirectoryW"));
        }
        let length = length as usize;
        if length < buffer.len() {
            buffer.truncate(length);
            return Ok(buffer);
        }
        // Too small: `length` is the size needed, NUL included.
        buffer.resize(length, 0);
    }
}

/// The profile directory Windows reports for `token`'s user
/// (`GetUserProfileDirectoryW`), not the environment's `USERPROFILE`.
pub fn user_profile_directory(token: &OwnedHandle) -> Result<Vec<u16>> {
    use windows_sys::Win32::UI::Shell::GetUserProfileDirectoryW;
    let mut buffer = vec![0u16; 260];
    loop {
        let mut size = u32::try_from(buffer.len()).unwrap_or(u32::MAX);
        // SAFETY: `buffer` holds `size` writable units; the token handle is
        // alive for the call.
        let ok = unsafe {
            GetUserProfileDirectoryW(
                token.as_raw_handle() as HANDLE,
                buffer.as_mut_ptr(),
                &mut size,
            )
        };
        if ok != 0 {
            let length = buffer.iter().position(|unit| *unit == 0).unwrap_or(0);
            buffer.truncate(length);
            return Ok(buffer);
        }
        let error = last_error("GetUserProfileDirectoryW");
        // Too small: `size` is the size needed, NUL included.
        if error.code != ERROR_INSUFFICIENT_BUFFER || size as usize <= buffer.len() {
            return Err(error);
        }
        buffer.resize(size as usize, 0);
    }
}

/// Whether this process can open process `pid` to write its memory or
/// end it (for the tests that one sandbox cannot reach another).
#[cfg(test)]
pub fn can_open_for_write(pid: u32) -> bool {
    use windows_sys::Win32::System::Threading::{
        OpenProcess, PROCESS_TERMINATE, PROCESS_VM_OPERATION, PROCESS_VM_WRITE,
    };
    // SAFETY: opens a handle owned at once, or fails.
    let handle = unsafe {
        OpenProcess(
            PROCESS_VM_WRITE | PROCESS_VM_OPERATION | PROCESS_TERMINATE,
            0,
            pid,
        )
    };
    if handle.is_null() {
        return false;
    }
    // SAFETY: a fresh handle nothing else owns; dropped (closed) at once.
    drop(unsafe { OwnedHandle::from_raw_handle(handle as RawHandle) });
    true
}

/// The jobs a Ctrl-C or Ctrl-Break of the console ends (raw handle values,
/// each owned by a `Running` that removes it before closing it).
static INTERRUPTIBLE_JOBS: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

/// The console control handler: on Ctrl-C or Ctrl-Break, ends every
/// registered job and keeps this process alive (TRUE), so that what
/// follows the command's end, removing temporary ACEs, runs. Other events
/// (console close, log-off, shut-down) go on to the default handler:
/// Windows ends the process then whatever a handler does.
pub(crate) unsafe extern "system" fn on_console_ctrl(event: u32) -> i32 {
    use windows_sys::Win32::System::Console::{CTRL_BREAK_EVENT, CTRL_C_EVENT};
    if event != CTRL_C_EVENT && event != CTRL_BREAK_EVENT {
        return 0;
    }
    let jobs = INTERRUPTIBLE_JOBS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for job in jobs.iter() {
        // SAFETY: a job handle still open: its owner removes it from the
        // list, under this lock, before closing it.
        unsafe { TerminateJobObject(*job as HANDLE, super::KILLED_EXIT_CODE) };
    }
    1
}

/// Has a Ctrl-C or Ctrl-Break of the console end `job` (until
/// [`forget_interruptible_job`]), installing the handler the first time.
pub fn end_job_on_console_interrupt(job: &OwnedHandle) -> Result<()> {
    use windows_sys::Win32::System::Console::SetConsoleCtrlHandler;
    static INSTALLED: std::sync::OnceLock<Result<()>> = std::sync::OnceLock::new();
    let installed = *INSTALLED.get_or_init(|| {
        // SAFETY: a handler that lives as long as the process; adding it
        // changes nothing else.
        let ok = unsafe { SetConsoleCtrlHandler(Some(on_console_ctrl), 1) };
        check("SetConsoleCtrlHandler", ok)
    });
    installed?;
    INTERRUPTIBLE_JOBS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(job.as_raw_handle() as usize);
    Ok(())
}

/// Takes `job` out of the jobs a console interrupt ends (before it is
/// closed); nothing if it was never in.
pub fn forget_interruptible_job(job: &OwnedHandle) {
    INTERRUPTIBLE_JOBS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .retain(|raw| *raw != job.as_raw_handle() as usize);
}

/// Whether process `pid` has ended (or cannot be found).
pub fn process_has_ended(pid: u32) -> bool {
    use windows_sys::Win32::System::Threading::{
        OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE,
    };
    // SAFETY: opens a handle owned at once, or fails.
    let handle = unsafe {
        OpenProcess(
            PROCESS_SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION,
            0,
            pid,
        )
    };
    if handle.is_null() {
        return true;
    }
    // SAFETY: a fresh handle nothing else owns.
    let handle = unsafe { OwnedHandle::from_raw_handle(handle as RawHandle) };
    matches!(wait(&handle, 0), Ok(true))
}
