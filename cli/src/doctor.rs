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
        // `ScopeSupport` is non-exhaustive: a mechanism added later.
        other => ("unknown", format!("{other:?}")),
    };
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
        config_problem: crate::config::Config::load(None)
            .err()
            .map(|error| format!("{error:#}")),
        session_scope,
        session_scope_detail,
    };
    let mut report = report;
    report.ready = report.sandbox_ready
        && report.tools_problem.is_none()
        && report.config_problem.is_none()
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
                "; a process that leaves its process group outlives an owner killed by SIGKILL"
            }
        )?;
        writeln!(
            out,
            "patched zsh       {}",
            report.zsh.clone().unwrap_or_else(|| "not found".into())
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
            [None, None, None] if report.zsh_patched => {
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
                for problem in problems.into_iter().flatten() {
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
