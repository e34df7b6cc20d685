//! The Windows backend: applies a [`WindowsPlan`](crate::windows_plan::WindowsPlan)
//! with Win32 calls. It creates the restricted token, places the ACEs
//! (reusing those already there, removing temporary ones afterwards),
//! creates a private desktop, and starts the command suspended in a job
//! object that kills the whole process tree when closed, with pipes for
//! its standard streams and nothing else inherited.
//!
//! Under Wine (CI) these calls run and succeed, but Wine enforces neither
//! the token nor file DACLs; the tests that need enforcement are marked
//! for a real Windows machine (see the README's Windows section).

mod sys;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::windows::io::OwnedHandle;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use sys::{AceRecord, Win32Error};

use crate::windows_plan::{
    mask, AceKind, AceLifetime, AcePlan, CapabilitySid, DefaultDaclEntry, PathKind,
    ProtectionReason, TokenPlan, WinPath, WindowsPlan,
};

/// Why the backend could not apply a plan or run a command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WindowsError {
    #[error("{0}")]
    Win32(Win32Error),
    #[error("{what} {}: {source}", path)]
    Path {
        what: &'static str,
        path: String,
        source: Win32Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "Windows does not report the token it made restricted (IsTokenRestricted is false): \
         its writes would not be confined, so nothing runs with it"
    )]
    TokenNotRestricted,
    /// Temporary ACEs that could not be removed, each with why: they
    /// still grant what was granted for one command.
    #[error(
        "temporary ACEs were left in place and still grant what one command was given: {}",
        .0.join("; ")
    )]
    TemporaryAcesLeft(Vec<String>),
    /// An error, and a second one met while cleaning up after it.
    #[error("{error}; then, cleaning up: {cleanup}")]
    CleanupFailed {
        error: Box<WindowsError>,
        cleanup: Box<WindowsError>,
    },
}

impl From<Win32Error> for WindowsError {
    fn from(error: Win32Error) -> Self {
        WindowsError::Win32(error)
    }
}

type Result<T> = std::result::Result<T, WindowsError>;

fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().collect()
}

/// ACCESS_ALLOWED_ACE_TYPE / ACCESS_DENIED_ACE_TYPE.
const ALLOWED_ACE: u8 = 0;
const DENIED_ACE: u8 = 1;
/// The ACE flag that marks an inherited ACE.
const INHERITED_ACE: u8 = 0x10;
const GENERIC_ALL: u32 = 0x1000_0000;

/// What to do with a token Windows does not report restricted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnenforcedToken {
    /// Refuse it: nothing runs (the default, and always so on Windows).
    #[default]
    Refuse,
    /// Use it anyway, but only under Wine, which ignores restricting SIDs
    /// and file DACLs whatever the token: there is nothing to enforce
    /// there, and the tests that run commands under Wine need a way
    /// through. On Windows this is the same as `Refuse`.
    RunUnderWine,
}

/// What the token confines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEnforcement {
    /// Windows reports the token restricted.
    Restricted,
    /// Wine made it and ignores its restrictions: nothing is confined.
    NotEnforcedUnderWine,
}

/// The restricted token of a plan, ready for `CreateProcessAsUserW`.
/// Only [`RestrictedToken::create`] makes one, and it refuses a token
/// Windows does not report restricted.
pub struct RestrictedToken {
    handle: OwnedHandle,
    enforcement: TokenEnforcement,
}

impl RestrictedToken {
    /// `CreateRestrictedToken` on this process's token with the plan's
    /// flags and restricting SIDs (the capability SIDs only), and the
    /// plan's default DACL (the user and the launch SID). Fails closed with
    /// [`WindowsError::TokenNotRestricted`] when Windows does not report
    /// the result restricted (as with no restricting SID at all), except
    /// under Wine when `unenforced` says [`UnenforcedToken::RunUnderWine`].
    pub fn create(plan: &TokenPlan, unenforced: UnenforcedToken) -> Result<RestrictedToken> {
        let (handle, restricted) = Self::make(plan)?;
        let enforcement = match (restricted, unenforced) {
            (true, _) => TokenEnforcement::Restricted,
            (false, UnenforcedToken::RunUnderWine) if sys::running_under_wine() => {
                TokenEnforcement::NotEnforcedUnderWine
            }
            (false, UnenforcedToken::RunUnderWine | UnenforcedToken::Refuse) => {
                return Err(WindowsError::TokenNotRestricted)
            }
        };
        Ok(RestrictedToken {
            handle,
            enforcement,
        })
    }

    pub fn enforcement(&self) -> TokenEnforcement {
        self.enforcement
    }

    /// The token and whether Windows reports it restricted, unchecked
    /// (for `doctor`, which reports what it finds).
    fn make(plan: &TokenPlan) -> Result<(OwnedHandle, bool)> {
        let own = sys::open_process_token()?;
        let sids = plan
            .restricting_sids
            .iter()
            .map(|sid| sys::sid_from_string(&sid.to_string()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let handle = sys::create_restricted_token(&own, plan.flags, &sids)?;
        let user = sys::token_user(&own)?;
        let mut requests = Vec::new();
        let mut capability_sids = Vec::new();
        for entry in &plan.default_dacl {
            match entry {
                DefaultDaclEntry::TokenUser => requests.push(grant(user.as_psid(), GENERIC_ALL)),
                DefaultDaclEntry::Capability(sid) => {
                    capability_sids.push(sys::sid_from_string(&sid.to_string())?);
                }
            }
        }
        requests.extend(
            capability_sids
                .iter()
                .map(|sid| grant(sid.as_ptr(), GENERIC_ALL)),
        );
        // SAFETY: every request names a SID alive in `user` or
        // `capability_sids`; no old ACL.
        let dacl = unsafe { sys::set_entries_in_acl(&requests, std::ptr::null()) }?;
        sys::set_default_dacl(&handle, &dacl)?;
        let restricted = sys::is_token_restricted(&handle);
        Ok((handle, restricted))
    }
}

fn grant(sid: windows_sys::Win32::Security::PSID, access: u32) -> sys::AceRequest {
    sys::AceRequest {
        sid,
        mask: access,
        deny: false,
        inheritance: 0,
        revoke: false,
    }
}

/// The ACL that results from adding `aces` to `existing` (null: an empty
/// DACL), read back ACE by ACE with `GetAce`. Composition only: nothing is
/// written to any file.
pub fn compose_acl(aces: &[AcePlan]) -> Result<Vec<AceRecord>> {
    let sids = aces
        .iter()
        .map(|ace| sys::sid_from_string(&ace.sid.to_string()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let requests = canonical_requests(aces.iter().zip(&sids));
    // SAFETY: the SIDs live in `sids` for the call.
    let acl = unsafe { sys::set_entries_in_acl(&requests, std::ptr::null()) }?;
    // SAFETY: `acl` is the valid ACL just made.
    Ok(unsafe { sys::acl_entries(acl.as_ptr()) }?)
}

/// The requests for `SetEntriesInAclW`, denies first: Windows puts new
/// denies before allows itself, but Wine keeps the order it is given, and
/// an allow read before a deny would grant what the deny should refuse.
fn canonical_requests<'a>(
    aces: impl Iterator<Item = (&'a AcePlan, &'a sys::Local<std::ffi::c_void>)>,
) -> Vec<sys::AceRequest> {
    let mut requests: Vec<sys::AceRequest> = aces
        .map(|(ace, sid)| sys::AceRequest {
            sid: sid.as_ptr(),
            mask: ace.mask,
            deny: ace.kind == AceKind::Deny,
            inheritance: u32::from(ace.inheritance.flags()),
            revoke: false,
        })
        .collect();
    requests.sort_by_key(|request| !request.deny);
    requests
}

/// What [`apply_acls`] did, path by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclReport {
    /// ACEs written.
    pub added: usize,
    /// ACEs found already in place and reused.
    pub reused: usize,
    /// Protected directories created so the command cannot create them.
    pub created: Vec<String>,
}

/// Whether `present` already does what `ace` asks: an explicit ACE of the
/// same kind, SID and inheritance denying at least the mask, or granting
/// exactly it (an allow that grants more, such as an older root ACE with
/// `FILE_DELETE_CHILD`, is not reused: [`stale_allows`] replaces it).
pub(crate) fn already_there(present: &[AceRecord], ace: &AcePlan) -> bool {
    let sid = ace.sid.to_string();
    let ace_type = match ace.kind {
        AceKind::Allow => ALLOWED_ACE,
        AceKind::Deny => DENIED_ACE,
    };
    present.iter().any(|record| {
        record.ace_type == ace_type
            && record.flags & INHERITED_ACE == 0
            && record.flags & 0x3 == ace.inheritance.flags()
            && record.sid == sid
            && match ace.kind {
                AceKind::Allow => record.mask == ace.mask,
                AceKind::Deny => record.mask & ace.mask == ace.mask,
            }
    })
}

/// The planned allows whose SID already has an explicit allow of another
/// mask or inheritance on the path (a root's ACE of an earlier version):
/// `GRANT_ACCESS` would add the planned rights to it, keeping what it
/// granted beyond them, so the SID's ACEs there are revoked first.
pub(crate) fn stale_allows<'a>(present: &[AceRecord], missing: &[&'a AcePlan]) -> Vec<&'a AcePlan> {
    missing
        .iter()
        .copied()
        .filter(|ace| ace.kind == AceKind::Allow)
        .filter(|ace| {
            let sid = ace.sid.to_string();
            present.iter().any(|record| {
                record.ace_type == ALLOWED_ACE
                    && record.flags & INHERITED_ACE == 0
                    && record.sid == sid
            })
        })
        .collect()
}

/// Places the plan's ACEs on disk: protected directories first (created
/// when missing), then per path the ACEs not already present, merged into
/// the existing DACL. Running it twice adds nothing the second time.
pub fn apply_acls(plan: &WindowsPlan) -> Result<AclReport> {
    let mut report = AclReport::default();
    for item in &plan.protected {
        if item.reason == ProtectionReason::ProtectedName && item.found == PathKind::Missing {
            let path = wide(&item.path.to_string());
            if sys::file_kind(&path).is_none() {
                sys::create_directory(&path).map_err(|source| WindowsError::Path {
                    what: "cannot create the protected directory",
                    path: item.path.to_string(),
                    source,
                })?;
                report.created.push(item.path.to_string());
            }
        }
    }
    let mut by_path: BTreeMap<&WinPath, Vec<&AcePlan>> = BTreeMap::new();
    for ace in &plan.aces {
        by_path.entry(&ace.path).or_default().push(ace);
    }
    for (path, aces) in by_path {
        let name = wide(&path.to_string());
        let path_error = |what, source| WindowsError::Path {
            what,
            path: path.to_string(),
            source,
        };
        let current =
            sys::named_dacl(&name).map_err(|e| path_error("cannot read the DACL of", e))?;
        // SAFETY: the DACL lives inside `current`.
        let present = unsafe { sys::acl_entries(current.dacl) }?;
        let wanted = aces.len();
        let missing: Vec<&AcePlan> = aces
            .into_iter()
            .filter(|ace| !already_there(&present, ace))
            .collect();
        report.reused += wanted - missing.len();
        if missing.is_empty() {
            continue;
        }
        let stale_sids = stale_allows(&present, &missing)
            .iter()
            .map(|ace| sys::sid_from_string(&ace.sid.to_string()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let revokes: Vec<sys::AceRequest> = stale_sids
            .iter()
            .map(|sid| sys::AceRequest {
                sid: sid.as_ptr(),
                mask: 0,
                deny: false,
                inheritance: 0,
                revoke: true,
            })
            .collect();
        let revoked = if revokes.is_empty() {
            None
        } else {
            // SAFETY: the SIDs live in `stale_sids`; the old DACL in
            // `current`.
            Some(unsafe { sys::set_entries_in_acl(&revokes, current.dacl) }?)
        };
        let base = revoked.as_ref().map_or(current.dacl, |acl| acl.as_ptr());
        let sids = missing
            .iter()
            .map(|ace| sys::sid_from_string(&ace.sid.to_string()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let requests = canonical_requests(missing.iter().copied().zip(&sids));
        // SAFETY: the SIDs live in `sids`; the base DACL in `current` or
        // `revoked`.
        let merged = unsafe { sys::set_entries_in_acl(&requests, base) }?;
        sys::set_named_dacl(&name, &merged).map_err(|e| path_error("cannot set the DACL of", e))?;
        report.added += missing.len();
    }
    Ok(report)
}

/// Removes the plan's temporary ACEs (granted for one command): every
/// explicit ACE of their SIDs on their paths. Every path and SID is tried,
/// whatever failed before it; the failures are reported together
/// ([`WindowsError::TemporaryAcesLeft`]). Removing an ACE that was never
/// placed changes nothing, so this is safe after a partial
/// [`apply_acls`].
pub fn remove_temporary_acls(plan: &WindowsPlan) -> Result<usize> {
    let mut removed = 0;
    let mut left = Vec::new();
    let mut seen: Vec<(&WinPath, CapabilitySid)> = Vec::new();
    for ace in plan
        .aces
        .iter()
        .filter(|ace| ace.lifetime == AceLifetime::Temporary)
    {
        if seen.contains(&(&ace.path, ace.sid)) {
            continue;
        }
        seen.push((&ace.path, ace.sid));
        match remove_aces_of(&ace.path, ace.sid) {
            Ok(()) => removed += 1,
            Err(error) => left.push(format!("{} ({}): {error}", ace.path, ace.sid)),
        }
    }
    if left.is_empty() {
        Ok(removed)
    } else {
        Err(WindowsError::TemporaryAcesLeft(left))
    }
}

/// Revokes every explicit ACE of `sid` on `path`.
fn remove_aces_of(path: &WinPath, sid: CapabilitySid) -> std::result::Result<(), Win32Error> {
    let name = wide(&path.to_string());
    let current = sys::named_dacl(&name)?;
    let sid = sys::sid_from_string(&sid.to_string())?;
    let revoke = sys::AceRequest {
        sid: sid.as_ptr(),
        mask: 0,
        deny: false,
        inheritance: 0,
        revoke: true,
    };
    // SAFETY: `sid` and the old DACL live for the call.
    let without = unsafe { sys::set_entries_in_acl(&[revoke], current.dacl) }?;
    sys::set_named_dacl(&name, &without)
}

/// A plan's ACEs, placed for one command: its temporary ones are removed
/// on every way out, a failure part-way through placing them, a command
/// that could not start, an early return or a panic. [`PlacedAces::remove`]
/// removes them and says what could not be; dropping it unremoved does the
/// same and writes the failures to stderr, the only place a drop can
/// report to.
pub struct PlacedAces<'plan> {
    plan: &'plan WindowsPlan,
    pub report: AclReport,
    removed: bool,
}

impl<'plan> PlacedAces<'plan> {
    /// [`apply_acls`], with the temporary ACEs removed again if it fails
    /// part-way (the error then says what could not be removed, too).
    pub fn place(plan: &'plan WindowsPlan) -> Result<PlacedAces<'plan>> {
        match apply_acls(plan) {
            Ok(report) => Ok(PlacedAces {
                plan,
                report,
                removed: false,
            }),
            Err(error) => Err(match remove_temporary_acls(plan) {
                Ok(_) => error,
                Err(cleanup) => WindowsError::CleanupFailed {
                    error: Box::new(error),
                    cleanup: Box::new(cleanup),
                },
            }),
        }
    }

    /// Removes the temporary ACEs now; how many (path, SID) pairs were
    /// cleared, or every one that was left.
    pub fn remove(mut self) -> Result<usize> {
        self.removed = true;
        remove_temporary_acls(self.plan)
    }
}

impl Drop for PlacedAces<'_> {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        if let Err(error) = remove_temporary_acls(self.plan) {
            eprintln!("execgate: {error}");
        }
    }
}

/// What a path holds now, for [`WindowsContext`](crate::windows_plan::WindowsContext)'s probe.
pub fn probe(path: &WinPath) -> PathKind {
    match sys::file_kind(&wide(&path.to_string())) {
        None => PathKind::Missing,
        Some(true) => PathKind::Directory,
        Some(false) => PathKind::File,
    }
}

/// `cmd.exe` in the system directory (`GetSystemDirectoryW`), the one
/// that runs batch files and `cmd` scripts: never one found through
/// `PATH` or the current directory, which a sandbox could have planted.
pub fn system_cmd_exe() -> Result<std::path::PathBuf> {
    use std::os::windows::ffi::OsStringExt;
    let mut path =
        std::path::PathBuf::from(std::ffi::OsString::from_wide(&sys::system_directory()?));
    path.push("cmd.exe");
    Ok(path)
}

/// The profile directory Windows reports for this process's user
/// (`GetUserProfileDirectoryW`), whatever `USERPROFILE` says: one of the
/// homes a writable working directory may not hold.
pub fn profile_directory() -> Result<std::path::PathBuf> {
    use std::os::windows::ffi::OsStringExt;
    let token = sys::open_process_token()?;
    Ok(std::path::PathBuf::from(std::ffi::OsString::from_wide(
        &sys::user_profile_directory(&token)?,
    )))
}

/// `CommandLineToArgvW` itself, to check the planner's quoting against.
pub fn split_command_line(line: &[u16]) -> Result<Vec<Vec<u16>>> {
    Ok(sys::command_line_to_argv(line)?)
}

/// A desktop of our own for the command, so it cannot send messages to
/// the user's windows. Its DACL admits the caller's logon SID and the
/// SIDs given: the launch SID alone, so that no other sandbox (which may
/// share a root's SID) can open it.
pub struct PrivateDesktop {
    _desktop: sys::Desktop,
    /// `winsta0\NAME`, for the startup information.
    pub qualified_name: String,
}

impl PrivateDesktop {
    pub fn create(capability_sids: &[CapabilitySid]) -> Result<PrivateDesktop> {
        let sid = CapabilitySid::random().map_err(|error| WindowsError::Io {
            what: "no random desktop name",
            source: std::io::Error::other(error.to_string()),
        })?;
        let name = format!("execgate-{}", sid.to_string().replace("S-1-5-21-", ""));
        let own = sys::open_process_token()?;
        let logon = sys::token_logon_sid(&own)?;
        let user = sys::token_user(&own)?;
        let caps = capability_sids
            .iter()
            .map(|sid| sys::sid_from_string(&sid.to_string()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut requests = vec![grant(
            logon.as_ref().map_or(user.as_psid(), sys::SidBuf::as_psid),
            GENERIC_ALL,
        )];
        requests.extend(caps.iter().map(|sid| grant(sid.as_ptr(), GENERIC_ALL)));
        // SAFETY: the SIDs live in `logon`, `user` and `caps`.
        let dacl = unsafe { sys::set_entries_in_acl(&requests, std::ptr::null()) }?;
        let desktop = sys::create_desktop(&wide(&name), &dacl)?;
        Ok(PrivateDesktop {
            _desktop: desktop,
            qualified_name: format!("winsta0\\{name}"),
        })
    }

    /// A private desktop is skipped in an SSH session, where there is no
    /// interactive window station to separate from.
    pub fn wanted() -> bool {
        std::env::var_os("SSH_CONNECTION").is_none() && std::env::var_os("SSH_CLIENT").is_none()
    }
}

/// Which token the command runs with.
#[derive(Clone, Copy)]
pub enum TokenChoice<'a> {
    /// The caller's own token (an unsandboxed escalation).
    Caller,
    Restricted(&'a RestrictedToken),
}

/// A command to start.
pub struct Command<'a> {
    pub token: TokenChoice<'a>,
    /// The resolved program, passed as the application name so the search
    /// rules of `CreateProcess` never pick another one.
    pub application: Option<Vec<u16>>,
    pub command_line: Vec<u16>,
    /// A sorted, terminated block (`windows_plan::environment_block`).
    pub environment: Vec<u16>,
    pub current_directory: Vec<u16>,
    pub desktop: Option<&'a PrivateDesktop>,
    pub stdin: Vec<u8>,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub exit_code: u32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The timeout passed and the job was terminated.
    pub timed_out: bool,
}

/// Exit code the job's processes get when a timeout or a cancellation
/// ends them.
pub const KILLED_EXIT_CODE: u32 = 0xC000_013A;

/// A started command: its job (closing it kills the whole tree), its
/// process, and the threads draining its output.
pub struct Running {
    job: OwnedHandle,
    process: OwnedHandle,
    pub pid: u32,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

fn drain(handle: OwnedHandle) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut file = std::fs::File::from(handle);
        let mut out = Vec::new();
        // A read error ends the stream like its end does; what came before
        // is kept.
        let _ = file.read_to_end(&mut out);
        out
    })
}

impl Running {
    /// Starts `command` suspended, puts it in a kill-on-close job, then
    /// lets it run: no instant of it runs outside the job.
    pub fn start(command: Command<'_>) -> Result<Running> {
        let (child_stdin, our_stdin) = sys::pipe()?;
        let (our_stdout, child_stdout) = sys::pipe()?;
        let (our_stderr, child_stderr) = sys::pipe()?;
        for end in [&child_stdin, &child_stdout, &child_stderr] {
            sys::set_inheritable(end)?;
        }
        let job = sys::kill_on_close_job()?;
        let desktop = command.desktop.map(|desktop| wide(&desktop.qualified_name));
        let token = match command.token {
            TokenChoice::Caller => None,
            TokenChoice::Restricted(token) => Some(&token.handle),
        };
        let spawned = sys::spawn_suspended(&sys::SpawnRequest {
            token,
            application: command.application.as_deref(),
            command_line: &command.command_line,
            environment: &command.environment,
            current_directory: &command.current_directory,
            desktop: desktop.as_deref(),
            stdin: &child_stdin,
            stdout: &child_stdout,
            stderr: &child_stderr,
        })?;
        // Our copies of the child's ends go, so its exit ends the streams.
        drop((child_stdin, child_stdout, child_stderr));
        if let Err(error) = sys::assign_to_job(&job, &spawned.process) {
            // It never ran: closing the job does not reach it, so end it.
            let _ = sys::terminate_job(&job, KILLED_EXIT_CODE);
            return Err(error.into());
        }
        sys::resume_thread(&spawned.thread)?;
        let stdout = drain(our_stdout);
        let stderr = drain(our_stderr);
        let stdin = command.stdin;
        std::thread::spawn(move || {
            let mut file = std::fs::File::from(our_stdin);
            // A child that does not read its input closes the pipe early.
            let _ = file.write_all(&stdin);
        });
        Ok(Running {
            job,
            process: spawned.process,
            pid: spawned.pid,
            stdout: Some(stdout),
            stderr: Some(stderr),
        })
    }

    /// Has a Ctrl-C or Ctrl-Break of the console end the job (the
    /// command's tree) instead of this process, so that the caller goes on
    /// to clean up after it: temporary ACEs are removed on that way out too.
    pub fn end_on_console_interrupt(&self) -> Result<()> {
        Ok(sys::end_job_on_console_interrupt(&self.job)?)
    }

    /// Ends every process of the job: the command and all it started.
    pub fn kill(&self) -> Result<()> {
        Ok(sys::terminate_job(&self.job, KILLED_EXIT_CODE)?)
    }

    /// Waits for the command, at most `timeout`; past it, the job is
    /// terminated. Output is collected either way.
    pub fn wait(mut self, timeout: Duration) -> Result<Finished> {
        let deadline = Instant::now() + timeout;
        let remaining = deadline.saturating_duration_since(Instant::now());
        // Anything longer than u32 milliseconds (49 days) is waited for in
        // full.
        let milliseconds = u32::try_from(remaining.as_millis()).unwrap_or(sys::WAIT_FOREVER);
        let ended = sys::wait(&self.process, milliseconds)?;
        if !ended {
            self.kill()?;
            sys::wait(&self.process, sys::WAIT_FOREVER)?;
        } else {
            // The command is done; whatever it left running goes with the
            // job, so a grandchild cannot hold the output pipes open.
            let _ = sys::terminate_job(&self.job, KILLED_EXIT_CODE);
        }
        let exit_code = sys::exit_code(&self.process)?;
        let join = |thread: Option<JoinHandle<Vec<u8>>>| {
            thread
                .map(|thread| thread.join().unwrap_or_default())
                .unwrap_or_default()
        };
        Ok(Finished {
            exit_code,
            stdout: join(self.stdout.take()),
            stderr: join(self.stderr.take()),
            timed_out: !ended,
        })
    }
}

/// Whether this process runs under Wine, which enforces neither
/// restricted tokens nor file DACLs: tests that expect Windows to refuse
/// something branch on it, as the backend does for
/// [`UnenforcedToken::RunUnderWine`].
pub fn running_under_wine() -> bool {
    sys::running_under_wine()
}

impl Drop for Running {
    fn drop(&mut self) {
        // Before the job handle closes with the fields.
        sys::forget_interruptible_job(&self.job);
    }
}

/// Exposed for the tests of process lifetime: whether process `pid` has
/// ended (or never existed).
pub fn process_has_ended(pid: u32) -> bool {
    sys::process_has_ended(pid)
}

/// What `doctor` reports on Windows: what was tried and what Windows made
/// of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowsReport {
    pub restricted_token: std::result::Result<bool, String>,
    pub acl_composition: std::result::Result<(), String>,
    pub job_objects: std::result::Result<(), String>,
    pub private_desktop: std::result::Result<(), String>,
}

impl WindowsReport {
    pub fn probe() -> WindowsReport {
        let sid = CapabilitySid::random().ok();
        let restricted_token = match sid {
            Some(sid) => RestrictedToken::make(&TokenPlan {
                flags: mask::DISABLE_MAX_PRIVILEGE | mask::LUA_TOKEN | mask::WRITE_RESTRICTED,
                launch_sid: sid,
                restricting_sids: vec![sid],
                default_dacl: vec![
                    DefaultDaclEntry::TokenUser,
                    DefaultDaclEntry::Capability(sid),
                ],
            })
            .map(|(_, restricted)| restricted)
            .map_err(|error| error.to_string()),
            None => Err("no random source".to_owned()),
        };
        let acl_composition = match WinPath::parse(r"C:\") {
            Ok(path) => compose_acl(&[AcePlan {
                path,
                kind: AceKind::Allow,
                sid: sid.unwrap_or(CapabilitySid::from_parts([1, 2, 3, 4])),
                mask: mask::ROOT_ALLOW,
                inheritance: crate::windows_plan::Inheritance::FoldersAndFiles,
                lifetime: AceLifetime::Kept,
            }])
            .map(drop)
            .map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        let job_objects = sys::kill_on_close_job()
            .map(drop)
            .map_err(|error| error.to_string());
        let private_desktop = PrivateDesktop::create(&[])
            .map(drop)
            .map_err(|error| error.to_string());
        WindowsReport {
            restricted_token,
            acl_composition,
            job_objects,
            private_desktop,
        }
    }
}
