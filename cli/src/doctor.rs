//! `execgate doctor`: what this machine offers the sandbox and where the
//! tools are. Its output goes through [`crate::output`]: a write that
//! fails is an error, never a panic.

use std::io::{self, Write};

use anyhow::{Context, Result};
use execgate_core_bridge::server::sandbox::MachineReport;
use execgate_core_bridge::server::ScopeSupport;
use execgate_core_bridge::Tools;

/// The doctor's findings, as printed with `--json`.
#[derive(serde::Serialize)]
struct DoctorReport {
    kernel: String,
    landlock_abi: Option<u32>,
    user_namespaces: bool,
    seccomp: bool,
    /// Seccomp user notification and thread pidfds: the sandbox's
    /// supervisor (host sockets, late deny-glob files, protected names).
    seccomp_supervisor: bool,
    bubblewrap: Option<String>,
    bubblewrap_version: Option<String>,
    /// Whether sessions can start here: the sandbox, the tools, the
    /// patched zsh and the default config all fine.
    ready: bool,
    sandbox_ready: bool,
    sandbox_problem: Option<String>,
    zsh: Option<String>,
    zsh_patched: bool,
    /// Built from this source's patch and build script.
    zsh_current: bool,
    /// The exec wrapper and sandbox helper found, and whether each was
    /// built from this binary's sources (the static musl builds of
    /// `scripts/build-wrapper` are used only then).
    wrapper: Option<String>,
    wrapper_current: bool,
    sandbox_helper: Option<String>,
    sandbox_helper_current: bool,
    /// Where the tools were found: `environment`, `build tree` or
    /// `installed` (`../libexec/execgate/` beside the binary).
    tools_origin: Option<&'static str>,
    tools_problem: Option<String>,
    /// Why the default config file cannot be read, when it cannot: every
    /// session without `--config` would stop.
    config_problem: Option<String>,
    /// What else stops every session that names nothing of its own: the
    /// default config's rules and skills, the audit log's place, the
    /// descriptor limit, the session scope (probe 163: each was `ready`).
    session_problems: Vec<String>,
    /// `cgroup` or `process-groups`: how sessions' processes are killed
    /// when their owner dies (see the README's security model).
    session_scope: &'static str,
    /// The cgroup, or why there is none.
    session_scope_detail: String,
}

/// `execgate doctor`: 0 when the machine is ready, 1 when not.
pub fn run(json: bool) -> Result<i32> {
    let machine = MachineReport::probe();
    let sandbox_problem = machine.require().err().map(|error| error.to_string());
    // Not `locate_with_origin`, which refuses an override no build of
    // execgate made: the report shows what each tool is, and that refusal
    // (`check_overrides`) is its `tools_problem` below.
    let exe = std::env::current_exe().context("cannot find the running binary")?;
    let located = Tools::discover(&exe, |name| std::env::var_os(name));
    let tools_origin = located.as_ref().ok().map(|located| located.origin.as_str());
    let tools = located.map(|located| located.tools);
    let zsh_patched = tools.as_ref().is_ok_and(Tools::zsh_is_patched);
    let zsh_current = tools.as_ref().is_ok_and(|tools| {
        let stamp = std::fs::canonicalize(&tools.zsh)
            .ok()
            .and_then(|zsh| zsh.parent()?.parent().map(|prefix| prefix.join(".stamp")));
        stamp
            .and_then(|stamp| std::fs::read_to_string(stamp).ok())
            .is_some_and(|stamp| stamp.trim() == env!("EXECGATE_ZSH_STAMP"))
    });
    let (session_scope, session_scope_detail) = match execgate_core_bridge::server::scope_support()
    {
        ScopeSupport::Cgroup(path) => ("cgroup", path.display().to_string()),
        ScopeSupport::ProcessGroups { why, .. } => ("process-groups", why),
        ScopeSupport::Refused(why) => ("refused", why),
        // `ScopeSupport` is non-exhaustive: a mechanism added later.
        other => ("unknown", format!("{other:?}")),
    };
    let config = crate::config::Config::load(None);
    let report = DoctorReport {
        kernel: machine.kernel.clone(),
        landlock_abi: machine.landlock_abi,
        user_namespaces: machine.user_namespaces,
        seccomp: machine.seccomp,
        seccomp_supervisor: machine.seccomp_supervisor,
        bubblewrap: machine
            .bwrap
            .as_ref()
            .map(|path| path.display().to_string()),
        bubblewrap_version: machine.bwrap_version.clone(),
        ready: false,
        sandbox_ready: sandbox_problem.is_none(),
        sandbox_problem,
        zsh: tools
            .as_ref()
            .ok()
            .map(|tools| tools.zsh.display().to_string()),
        zsh_patched,
        zsh_current,
        wrapper: tools
            .as_ref()
            .ok()
            .map(|tools| tools.wrapper.display().to_string()),
        wrapper_current: tools.as_ref().is_ok_and(Tools::wrapper_is_current),
        sandbox_helper: tools
            .as_ref()
            .ok()
            .map(|tools| tools.sandbox_helper.display().to_string()),
        sandbox_helper_current: tools.as_ref().is_ok_and(Tools::sandbox_helper_is_current),
        tools_origin,
        // What a session's lookup would refuse too (an override no build
        // made).
        tools_problem: match &tools {
            Err(error) => Some(error.to_string()),
            Ok(tools) => tools.check_overrides().err().map(|error| error.to_string()),
        },
        config_problem: config.as_ref().err().map(|error| format!("{error:#}")),
        session_problems: session_problems(config.as_ref().ok(), session_scope == "refused"),
        session_scope,
        session_scope_detail,
    };
    let mut report = report;
    report.ready = report.sandbox_ready
        && report.tools_problem.is_none()
        && report.config_problem.is_none()
        && report.session_problems.is_empty()
        && report.zsh_patched;
    crate::output::stdout(|out| print(out, &report, json))?;
    // Exit 1 either way: a problem found is the report's answer, not an
    // error of doctor's own (125).
    if !report.ready && !json {
        crate::stderr::line("execgate: this machine is not ready; see the problems above");
    }
    Ok(if report.ready { 0 } else { 1 })
}

/// The report on `out`: as JSON, or as the table people read.
fn print(out: &mut dyn Write, report: &DoctorReport, json: bool) -> io::Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *out, report)?;
        writeln!(out)?;
    } else {
        let yes_no = |value: bool| if value { "yes" } else { "no" };
        writeln!(out, "kernel            {}", report.kernel)?;
        writeln!(
            out,
            "landlock          {}",
            report
                .landlock_abi
                .map_or("not enabled".into(), |abi| format!("ABI {abi}"))
        )?;
        writeln!(out, "user namespaces   {}", yes_no(report.user_namespaces))?;
        writeln!(out, "seccomp           {}", yes_no(report.seccomp))?;
        writeln!(
            out,
            "supervisor        {} (seccomp user notification, thread pidfds: Linux 6.9)",
            yes_no(report.seccomp_supervisor)
        )?;
        writeln!(
            out,
            "bubblewrap        {}",
            match (&report.bubblewrap, &report.bubblewrap_version) {
                (Some(path), Some(version)) => format!("{path} ({version})"),
                (Some(path), None) => path.clone(),
                _ => "not found".into(),
            }
        )?;
        writeln!(
            out,
            "session scope     {} ({}){}",
            report.session_scope,
            report.session_scope_detail,
            if report.session_scope == "cgroup" {
                ""
            } else {
                "; a process that leaves its process group, or whose escalated command has ended, \
                 outlives an owner killed by SIGKILL; questions on the terminal about programs \
                 and hosts are declined, unasked (nothing freezes the command while one is up)"
            }
        )?;
        writeln!(
            out,
            "patched zsh       {}",
            report
                .zsh
                .clone()
                .unwrap_or_else(|| match report.tools_origin {
                    // Not looked for: the tools as a whole were not found (an
                    // override naming nothing, say), which the problem says.
                    None => "unknown (the tools were not found: see the problem below)".into(),
                    Some(_) => "not found".into(),
                })
        )?;
        let matches = |current: bool| {
            if current {
                "matches"
            } else {
                "does not match"
            }
        };
        for (name, path, current) in [
            ("exec wrapper", &report.wrapper, report.wrapper_current),
            (
                "sandbox helper",
                &report.sandbox_helper,
                report.sandbox_helper_current,
            ),
        ] {
            if let Some(path) = path {
                writeln!(out, "{name:<18}{path} ({} this build)", matches(current))?;
            }
        }
        if let Some(origin) = report.tools_origin {
            writeln!(
                out,
                "tools             {origin}; zsh {} this build",
                matches(report.zsh_current)
            )?;
        }
        let problems = [
            &report.sandbox_problem,
            &report.tools_problem,
            &report.config_problem,
        ];
        match problems {
            [None, None, None] if report.zsh_patched && report.session_problems.is_empty() => {
                if !report.zsh_current {
                    writeln!(
                        out,
                        "warning           the patched zsh was not built from this source's \
                         patch; rebuild it with scripts/build-zsh.sh"
                    )?;
                }
                if !(report.wrapper_current && report.sandbox_helper_current) {
                    writeln!(
                        out,
                        "warning           the exec wrapper or the sandbox helper was not \
                         built from this binary's sources; rebuild them with cargo build, or \
                         unset the override (EXECGATE_WRAPPER_BINARY, \
                         EXECGATE_SANDBOX_HELPER) that names them"
                    )?;
                }
                writeln!(out, "ready             yes")?;
            }
            problems => {
                let session = report.session_problems.iter();
                for problem in problems.into_iter().flatten().chain(session) {
                    writeln!(out, "problem           {problem}")?;
                }
                if report.zsh.is_some() && !report.zsh_patched {
                    writeln!(
                        out,
                        "problem           the zsh found is not the patched one"
                    )?;
                }
                writeln!(out, "ready             no")?;
            }
        }
    }
    Ok(())
}

/// What stops every session that names nothing of its own (no `--config`,
/// `--rules`, `--audit-log`), beyond the config file itself: each is a
/// refusal `execgate run` would print. Nothing is made or changed.
fn session_problems(config: Option<&crate::config::Config>, scope_refused: bool) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(error) = execgate_core_bridge::server::enough_descriptors() {
        problems.push(error.to_string());
    }
    if let Some(problem) = execgate_core_bridge::sessions_dir_problem() {
        problems.push(problem);
    }
    if scope_refused {
        problems.push(
            "sessions cannot be scoped as asked (see session scope above); unset \
             EXECGATE_SCOPE or set it to cgroup or process-groups"
                .into(),
        );
    }
    let Some(config) = config else {
        return problems;
    };
    if let Err(error) = crate::policy::load_rules(&config.rules) {
        problems.push(format!("the config's rules: {}", crate::causes(&error)));
    }
    if let Err(error) = execgate_core_bridge::SkillRegistry::load(&config.skills) {
        problems.push(format!(
            "the config's skills: {}",
            crate::causes(&anyhow::Error::from(error))
        ));
    }
    let log = match &config.audit.log {
        Some(log) => Ok(log.clone()),
        None => crate::audit::default_log_path(),
    };
    match log {
        Err(error) => problems.push(crate::causes(&error)),
        Ok(log) => {
            if let Some(problem) = audit_log_problem(&log) {
                problems.push(problem);
            }
        }
    }
    problems
}

/// Why a session could not open the audit log at `log`, judged without
/// making anything: a file or a missing permission on the way, or
/// something other than a regular file at its name.
fn audit_log_problem(log: &std::path::Path) -> Option<String> {
    use nix::unistd::{access, AccessFlags};
    let fix = "choose another with --audit-log, or [audit] log in the config";
    match std::fs::symlink_metadata(log) {
        Ok(found) if !found.file_type().is_file() => {
            return Some(format!(
                "the audit log {} is not a regular file; {fix}",
                log.display()
            ))
        }
        Ok(_) => {
            return access(log, AccessFlags::W_OK).err().map(|errno| {
                format!(
                    "the audit log {} cannot be written ({errno}); {fix}",
                    log.display()
                )
            })
        }
        Err(_) => {}
    }
    // The nearest place on the way that exists must be a directory the
    // session can make the rest in.
    let existing = log.ancestors().skip(1).find(|dir| dir.exists())?;
    if !existing.is_dir() {
        return Some(format!(
            "the audit log's directory cannot be made: {} is a file, not a directory; {fix}",
            existing.display()
        ));
    }
    access(existing, AccessFlags::W_OK | AccessFlags::X_OK)
        .err()
        .map(|errno| {
            format!(
                "the audit log's directory cannot be made in {} ({errno}); {fix}",
                existing.display()
            )
        })
}
