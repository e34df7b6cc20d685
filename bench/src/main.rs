//! `execgate-bench`: what interception costs, measured side by side on the
//! real patched zsh, wrapper, server and sandbox. `scripts/bench` builds
//! everything in release mode and runs it; `BENCHMARKS.md` explains each
//! figure. Timing lives here, never in tests.
//!
//! `execgate-bench WRAPPER SANDBOX-HELPER ZSH [--quick]`

mod floor;
mod growth;
mod network;
mod unified;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use execgate_audit::{AuditLog, RecordOptions, Rotation, SessionAudit};
use execgate_escalate_server::sandbox::{
    parse_target, Access, Launcher, PermissionProfile, SandboxContext,
};
use execgate_escalate_server::{
    Decision, ExecContext, Execution, Policy, Session, SessionConfig, SessionEvent, SessionSandbox,
};
use nix::sys::resource::{getrusage, UsageWho};

struct Tools {
    wrapper: PathBuf,
    /// Another build of the wrapper (`--other-wrapper`: the static glibc one
    /// `cargo build` puts beside `execgate`, which is used when the musl
    /// build is missing or stale): case c once more, for comparison (a
    /// `Run` command no longer goes through a wrapper).
    other_wrapper: Option<PathBuf>,
    /// Which P1 cases to run (`--cases=abc`), all when empty.
    cases: String,
    helper: PathBuf,
    zsh: PathBuf,
    scratch: tempfile::TempDir,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|arg| arg == "--quick");
    let other_wrapper = args
        .iter()
        .find_map(|arg| arg.strip_prefix("--other-wrapper="))
        .map(PathBuf::from);
    let cases = args
        .iter()
        .find_map(|arg| arg.strip_prefix("--cases="))
        .unwrap_or_default()
        .to_owned();
    let paths: Vec<&String> = args.iter().filter(|arg| !arg.starts_with("--")).collect();
    let [wrapper, helper, zsh] = paths.as_slice() else {
        bail!(
            "usage: execgate-bench WRAPPER SANDBOX-HELPER ZSH [--quick] [--p1] \
             [--p2] [--p3] [--p5] [--workload] [--cases=abcdef] [--other-wrapper=PATH]"
        );
    };
    let tools = Tools {
        other_wrapper,
        cases,
        wrapper: PathBuf::from(wrapper),
        helper: PathBuf::from(helper),
        zsh: PathBuf::from(zsh),
        // Under /var/tmp: not in the sandbox's writable temp dir.
        scratch: tempfile::Builder::new()
            .prefix("execgate-bench")
            .tempdir_in("/var/tmp")?,
    };
    let reps = if quick { 2 } else { 5 };
    let only_p1 = args.iter().any(|arg| arg == "--p1");
    if args.iter().any(|arg| arg == "--p5") {
        return growth::p5(tools.scratch.path(), quick).await;
    }

    println!("# execgate benchmarks\n");
    println!(
        "machine: {}; {} cores\n",
        cpu_model(),
        std::thread::available_parallelism()?
    );
    if args.iter().any(|arg| arg == "--p2") {
        return p2(&tools, 64, 50).await;
    }
    if only_p1 {
        return p1(&tools, reps, if quick { 500 } else { 2000 }).await;
    }
    if args.iter().any(|arg| arg == "--unified") {
        let execgate = args
            .iter()
            .find_map(|arg| arg.strip_prefix("--execgate="))
            .map(PathBuf::from);
        let paths = unified::Paths {
            wrapper: &tools.wrapper,
            helper: &tools.helper,
            zsh: &tools.zsh,
            execgate,
            scratch: tools.scratch.path(),
        };
        return unified::unified(&paths, if quick { 10 } else { 30 }).await;
    }
    if args.iter().any(|arg| arg == "--network") {
        let client = std::env::current_exe()?.with_file_name("execgate-netbench-client");
        let paths = network::Paths {
            wrapper: &tools.wrapper,
            helper: &tools.helper,
            zsh: &tools.zsh,
            client,
            scratch: tools.scratch.path(),
        };
        return network::network(&paths, if quick { 3 } else { 7 }, 1).await;
    }
    if args.iter().any(|arg| arg == "--workload") {
        return workload(&tools, reps).await;
    }
    if args.iter().any(|arg| arg == "--p3") {
        return p3(&tools, if quick { 10 } else { 30 }).await;
    }
    p4(&tools).await?;
    p1(&tools, reps, if quick { 500 } else { 2000 }).await?;
    p2(
        &tools,
        if quick { 16 } else { 64 },
        if quick { 20 } else { 50 },
    )
    .await?;
    p3(&tools, if quick { 10 } else { 30 }).await?;
    growth::p5(tools.scratch.path(), quick).await?;
    workload(&tools, reps).await?;
    Ok(())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|model| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn by_path(path: &str, decision: Decision) -> Arc<dyn Policy> {
    let path = PathBuf::from(path);
    Arc::new(move |request: &ExecContext| {
        if request.executable.canonical_path == path {
            decision.clone()
        } else {
            Decision::Run
        }
    })
}

/// Debian's installed zsh 5.9 (apt package `zsh`), case a0.
const DEBIAN_ZSH: &str = "/usr/bin/zsh";

/// How a measured shell runs.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Debian's installed zsh (`/usr/bin/zsh`): what a user compares with.
    Debian,
    /// Stock behaviour: the patched zsh with no wrapper configured.
    Bare,
    /// The patched zsh asking a server that only answers `Run` (b0).
    Floor,
    /// Under a session, shell unsandboxed.
    Session,
    /// Under a session, shell inside the workspace-write sandbox.
    Sandboxed,
    /// The same with a deny glob (`**/*.env`): the sandbox's supervisor
    /// then does every open.
    SandboxedDenyGlob,
}

struct Run {
    wall: Duration,
    /// Per decision: from accepting the connection, and from having read
    /// the whole request, to the decision being recorded.
    latencies: Vec<(Duration, Duration)>,
    errors: usize,
}

/// Runs `script` in one zsh per entry of `scripts`, all at once, under one
/// server (one session per shell, its shell `niceness` steps nicer than
/// the server), and measures the wall time.
async fn run_shells(
    tools: &Tools,
    wrapper: &Path,
    mode: Mode,
    policy: Arc<dyn Policy>,
    scripts: &[String],
    cwd: &Path,
    niceness: u8,
) -> Result<Run> {
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(0usize));
    let log = Arc::new(AuditLog::open(
        tools.scratch.path().join("audit.jsonl"),
        Rotation::default(),
    )?);
    let mut sessions = Vec::new();
    let mut floors = Vec::new();
    let mut commands = Vec::new();
    for script in scripts {
        let args = ["-f".into(), "-c".into(), script.into()];
        if mode == Mode::Floor {
            let (command, floor) = floor::Floor::start(&tools.zsh, wrapper, &args)?;
            commands.push(command);
            floors.push(floor);
            continue;
        }
        if matches!(mode, Mode::Bare | Mode::Debian) {
            let zsh = if mode == Mode::Debian {
                Path::new(DEBIAN_ZSH)
            } else {
                tools.zsh.as_path()
            };
            let mut command = std::process::Command::new(zsh);
            command.args(&args);
            commands.push(command);
            continue;
        }
        let mut config = SessionConfig::new(wrapper, policy.clone());
        config.shell_niceness = niceness;
        let (sink_latencies, sink_errors) = (latencies.clone(), errors.clone());
        config.events = Some(Arc::new(move |event: &SessionEvent| match event {
            SessionEvent::Decided { request, .. } => {
                let took = (request.received.elapsed(), request.request_read.elapsed());
                sink_latencies
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(took);
            }
            SessionEvent::RequestRefused { .. } | SessionEvent::SpawnFailed { .. } => {
                *sink_errors.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            }
            _ => {}
        }));
        config.audit = Some(Arc::new(SessionAudit::new(
            log.clone(),
            RecordOptions::default(),
        )));
        let mut launcher = Launcher::new(&tools.helper)?;
        launcher.expose(&tools.zsh);
        let mut profile =
            PermissionProfile::preset("workspace-write").context("the workspace-write preset")?;
        if mode == Mode::SandboxedDenyGlob {
            if let PermissionProfile::Managed { file_system, .. } = &mut profile {
                file_system.push(parse_target("**/*.env", None)?, Access::None)?;
            }
        }
        config.sandbox = Some(SessionSandbox {
            launcher,
            turn_default: profile,
            context: SandboxContext::new(cwd),
        });
        let session = Session::start(config)?;
        let command = if matches!(mode, Mode::Sandboxed | Mode::SandboxedDenyGlob) {
            session.shell_command(&tools.zsh, &args).command
        } else {
            let mut command = std::process::Command::new(&tools.zsh);
            command.args(&args);
            session.prepare_shell(&mut command);
            command
        };
        commands.push(command);
        sessions.push(session);
    }
    let started = Instant::now();
    let mut children = Vec::new();
    for mut command in commands {
        command.current_dir(cwd).stdout(std::process::Stdio::null());
        children.push(tokio::process::Command::from(command).spawn()?);
    }
    for session in &mut sessions {
        session.shell_spawned();
    }
    for floor in &mut floors {
        floor.shell_spawned();
    }
    let mut failed = 0;
    for mut child in children {
        if !child.wait().await?.success() {
            failed += 1;
        }
    }
    let wall = started.elapsed();
    for session in sessions {
        session.shutdown().await;
    }
    for floor in floors {
        floor.join();
    }
    let latencies = std::mem::take(&mut *latencies.lock().unwrap_or_else(|e| e.into_inner()));
    let errors = failed + *errors.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Run {
        wall,
        latencies,
        errors,
    })
}

pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

pub(crate) fn spread(values: &[f64]) -> (f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

async fn p1(tools: &Tools, reps: usize, execs: usize) -> Result<()> {
    let cwd = tools.scratch.path().to_path_buf();
    // The sandboxed escalation starts a whole sandbox per exec: fewer.
    let sandboxed_execs = execs / 10;
    // (name, wrapper, mode, policy, execs)
    type Case<'a> = (&'static str, &'a Path, Mode, Arc<dyn Policy>, usize);
    let mut cases: Vec<Case<'_>> = vec![
        (
            "a0: Debian's zsh",
            &tools.wrapper,
            Mode::Debian,
            by_path("/", Decision::Run),
            execs,
        ),
        (
            "a: no wrapper",
            &tools.wrapper,
            Mode::Bare,
            by_path("/", Decision::Run),
            execs,
        ),
        (
            "b0: Run, from a server that only answers",
            &tools.wrapper,
            Mode::Floor,
            by_path("/", Decision::Run),
            execs,
        ),
        (
            "b: Run, audit on",
            &tools.wrapper,
            Mode::Session,
            by_path("/", Decision::Run),
            execs,
        ),
        (
            "c: Escalate(Unsandboxed)",
            &tools.wrapper,
            Mode::Session,
            by_path("/usr/bin/true", Decision::Escalate(Execution::Unsandboxed)),
            execs,
        ),
        (
            "d: Escalate(TurnDefault), sandboxed shell",
            &tools.wrapper,
            Mode::Sandboxed,
            by_path("/usr/bin/true", Decision::Escalate(Execution::TurnDefault)),
            sandboxed_execs,
        ),
        (
            "e: Run, sandboxed shell",
            &tools.wrapper,
            Mode::Sandboxed,
            by_path("/", Decision::Run),
            execs,
        ),
        (
            "f: Run, sandboxed shell with a deny glob",
            &tools.wrapper,
            Mode::SandboxedDenyGlob,
            by_path("/", Decision::Run),
            execs,
        ),
    ];
    if let Some(other_wrapper) = &tools.other_wrapper {
        cases.push((
            "c, cargo build's static glibc wrapper",
            other_wrapper,
            Mode::Session,
            by_path("/usr/bin/true", Decision::Escalate(Execution::Unsandboxed)),
            execs,
        ));
    }
    // `--cases=bc` keeps a (the base of every ratio) and the cases whose
    // names start with those letters.
    if !tools.cases.is_empty() {
        cases.retain(|(name, ..)| {
            name.starts_with('a') || name.starts_with(|c: char| tools.cases.contains(c))
        });
    }
    let mut per_exec: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    // This process's CPU time per exec: the server's work (in a0 and a,
    // where there is no server, what driving the shell costs).
    let mut server_cpu: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    // Alternate the cases within each repetition, so drift hits all alike.
    for _ in 0..reps {
        for (index, (_, wrapper, mode, policy, count)) in cases.iter().enumerate() {
            let script = format!("repeat {count} /bin/true");
            let cpu_before = cpu_seconds(UsageWho::RUSAGE_SELF)?;
            let run = run_shells(tools, wrapper, *mode, policy.clone(), &[script], &cwd, 0).await?;
            let cpu = cpu_seconds(UsageWho::RUSAGE_SELF)? - cpu_before;
            if run.errors > 0 {
                bail!("P1 {}: {} errors", cases[index].0, run.errors);
            }
            per_exec[index].push(run.wall.as_secs_f64() * 1000.0 / *count as f64);
            server_cpu[index].push(cpu * 1e6 / *count as f64);
        }
    }
    println!("## P1: {execs} x /bin/true in one zsh loop ({sandboxed_execs} for d), {reps} alternating runs\n");
    println!(
        "| case | ms per exec (median) | min-max | ratio to a0 (median) | ratio to a0 min-max \
         | ratio to a (median) | ratio to a min-max | server CPU µs per exec (median) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    // Ratios are taken run by run (the cases alternate), against a0 and a.
    let ratio_columns = |values: &[f64], base: &[f64]| {
        let ratios: Vec<f64> = values.iter().zip(base).map(|(v, b)| v / b).collect();
        let (rmin, rmax) = spread(&ratios);
        let base_median = median(&mut base.to_vec());
        format!(
            "{:.2} | {rmin:.2}-{rmax:.2}",
            median(&mut values.to_vec()) / base_median
        )
    };
    for (index, (name, ..)) in cases.iter().enumerate() {
        let values = &per_exec[index];
        let (min, max) = spread(values);
        println!(
            "| {name} | {:.3} | {min:.3}-{max:.3} | {} | {} | {:.0} |",
            median(&mut values.clone()),
            ratio_columns(values, &per_exec[0]),
            ratio_columns(values, &per_exec[1]),
            median(&mut server_cpu[index].clone()),
        );
    }
    println!();
    Ok(())
}

fn cpu_seconds(who: UsageWho) -> Result<f64> {
    let usage = getrusage(who)?;
    let seconds = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    Ok(seconds(usage.user_time()) + seconds(usage.system_time()))
}

async fn p2(tools: &Tools, shells: usize, execs: usize) -> Result<()> {
    let cwd = tools.scratch.path().to_path_buf();
    let scripts: Vec<String> = (0..shells)
        .map(|_| format!("repeat {execs} /bin/true"))
        .collect();
    println!("## P2: {shells} shells at once, {execs} execs each, one server (Run, audit on)\n");
    println!(
        "| shells | decisions | decisions/s | decision p50 ms | decision p99 ms | from accept p50 ms | from accept p99 ms | server CPU share | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    // Unsandboxed shells in the server's own session, as they are and 10
    // steps nicer (`SessionConfig::shell_niceness`); then sandboxed ones,
    // which bubblewrap starts in sessions of their own.
    for (name, mode, niceness) in [
        ("unsandboxed", Mode::Session, 0),
        ("unsandboxed, niceness 10", Mode::Session, 10),
        ("sandboxed", Mode::Sandboxed, 0),
    ] {
        let (self_before, children_before) = (
            cpu_seconds(UsageWho::RUSAGE_SELF)?,
            cpu_seconds(UsageWho::RUSAGE_CHILDREN)?,
        );
        let run = run_shells(
            tools,
            &tools.wrapper,
            mode,
            by_path("/", Decision::Run),
            &scripts,
            &cwd,
            niceness,
        )
        .await?;
        let server = cpu_seconds(UsageWho::RUSAGE_SELF)? - self_before;
        let others = cpu_seconds(UsageWho::RUSAGE_CHILDREN)? - children_before;
        let mut from_accept: Vec<Duration> = run.latencies.iter().map(|l| l.0).collect();
        let mut from_request: Vec<Duration> = run.latencies.iter().map(|l| l.1).collect();
        from_accept.sort();
        from_request.sort();
        let percentile = |sorted: &[Duration], p: f64| {
            let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
            sorted
                .get(index)
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
        };
        println!(
            "| {name} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} |",
            run.latencies.len(),
            run.latencies.len() as f64 / run.wall.as_secs_f64(),
            percentile(&from_request, 0.5),
            percentile(&from_request, 0.99),
            percentile(&from_accept, 0.5),
            percentile(&from_accept, 0.99),
            // What runs inside bubblewrap is not all accounted to our
            // children by getrusage: no share for sandboxed shells.
            if mode == Mode::Sandboxed {
                "n/a".to_owned()
            } else {
                format!("{:.1}%", 100.0 * server / (server + others))
            },
            run.errors
        );
    }
    println!(
        "\nMeasured in the server, to the decision being recorded and reported (before the \
         reply is written): *decision* from having read the whole request, *from accept* \
         from accepting the request's connection (which adds the time the wrapper, \
         competing for a CPU with 64 shells, takes to write its request after its hello).\n"
    );
    Ok(())
}

async fn p3(tools: &Tools, reps: usize) -> Result<()> {
    let cwd = tools.scratch.path().to_path_buf();
    let launcher = {
        let mut launcher = Launcher::new(&tools.helper)?;
        launcher.expose(&tools.zsh);
        launcher
    };
    let profile = PermissionProfile::preset("workspace-write").context("preset")?;
    let policy = execgate_escalate_server::sandbox::ResolvedPolicy::resolve(
        &profile,
        &SandboxContext::new(&cwd),
    )?;
    let mut denying = profile.clone();
    if let PermissionProfile::Managed { file_system, .. } = &mut denying {
        file_system.push(parse_target("**/*.env", None)?, Access::None)?;
    }
    let denying = execgate_escalate_server::sandbox::ResolvedPolicy::resolve(
        &denying,
        &SandboxContext::new(&cwd),
    )?;
    let argv = [
        tools.zsh.clone().into_os_string(),
        "-fc".into(),
        "true".into(),
    ];
    let (mut bare, mut sandboxed, mut with_glob) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        let started = Instant::now();
        std::process::Command::new(&tools.zsh)
            .args(["-fc", "true"])
            .status()?;
        bare.push(started.elapsed().as_secs_f64() * 1000.0);
        let started = Instant::now();
        launcher
            .command(&policy, &cwd, None, Default::default(), &argv)
            .status()?;
        sandboxed.push(started.elapsed().as_secs_f64() * 1000.0);
        let started = Instant::now();
        launcher
            .command(&denying, &cwd, None, Default::default(), &argv)
            .status()?;
        with_glob.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let (bare, sandboxed, with_glob) = (
        median(&mut bare),
        median(&mut sandboxed),
        median(&mut with_glob),
    );
    println!("## P3: zsh -fc true, bare vs inside workspace-write ({reps} alternating runs)\n");
    println!("| bare ms | sandboxed ms | added ms | with a deny glob ms |\n|---|---|---|---|");
    println!(
        "| {bare:.2} | {sandboxed:.2} | {:.2} | {with_glob:.2} |\n",
        sandboxed - bare
    );
    Ok(())
}

fn rss_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// A policy that never answers: the wrapper waits, so its memory can be read.
struct Undecided;

impl Policy for Undecided {
    fn decide<'a>(&'a self, _: &'a ExecContext) -> execgate_escalate_server::DecisionFuture<'a> {
        Box::pin(std::future::pending())
    }
}

async fn p4(tools: &Tools) -> Result<()> {
    // Each build of the wrapper: the static musl one execgate uses and,
    // when given, the one `cargo build` makes.
    let mut rows = Vec::new();
    for (build, wrapper) in std::iter::once(("musl (used)", &tools.wrapper))
        .chain(tools.other_wrapper.iter().map(|path| ("cargo build", path)))
    {
        let size = std::fs::metadata(wrapper)?.len();
        let rss = wrapper_peak_rss(wrapper).await?;
        let linkage = if is_static(wrapper)? {
            "static"
        } else {
            "dynamic"
        };
        rows.push(format!(
            "| {build} | {:.0} KiB | {linkage} | {rss} KiB |",
            size as f64 / 1024.0
        ));
    }

    let sessions = 200;
    let before = rss_kib()?;
    let mut idle = Vec::new();
    for _ in 0..sessions {
        idle.push(Session::start(SessionConfig::new(
            &tools.wrapper,
            by_path("/", Decision::Run),
        ))?);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let per_session = (rss_kib()?.saturating_sub(before)) as f64 / sessions as f64;
    for session in idle {
        session.shutdown().await;
    }
    println!("## P4: footprint\n");
    println!("| wrapper build | size | linkage | peak RSS |\n|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    println!("\nserver RSS per idle session: {per_session:.1} KiB\n");
    Ok(())
}

/// A wrapper's high-water mark, read while it waits for a decision that
/// never comes: everything it does before the reply is in it.
async fn wrapper_peak_rss(wrapper: &Path) -> Result<u64> {
    let mut session = Session::start(SessionConfig::new(wrapper, Arc::new(Undecided)))?;
    let fd = session
        .shell_socket()
        .context("the shell socket")?
        .as_raw_fd();
    let mut command = std::process::Command::new(wrapper);
    command.args([
        &fd.to_string(),
        "/usr/bin/true",
        "/usr/bin/true",
        "zsh: ",
        "true",
        "true",
    ]);
    session.prepare_shell(&mut command);
    let mut child = command.spawn()?;
    session.shell_spawned();
    let mut wrapper_rss = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
        let hwm = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| {
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            });
        let waiting = std::fs::read_to_string(format!("/proc/{}/wchan", child.id()))
            .is_ok_and(|wchan| wchan != "0");
        if waiting {
            wrapper_rss = hwm;
            break;
        }
    }
    child.kill()?;
    child.wait()?;
    session.shutdown().await;
    wrapper_rss.context("the wrapper never waited for its answer")
}

/// An ELF without a `PT_INTERP` program header is statically linked.
fn is_static(path: &Path) -> Result<bool> {
    let bytes = std::fs::read(path)?;
    Ok(!bytes
        .windows(b"/lib64/ld-linux".len())
        .any(|w| w == b"/lib64/ld-linux"))
}

async fn workload(tools: &Tools, reps: usize) -> Result<()> {
    let dir = tools.scratch.path().join("workload");
    std::fs::create_dir_all(&dir)?;
    for i in 0..50 {
        std::fs::write(
            dir.join(format!("f{i}.c")),
            format!("int f{i}(int x) {{ return x * {i} + 1; }}\n"),
        )?;
    }
    let script =
        "for f in *.c; do gcc -O1 -c $f -o ${f:r}.o || exit 1; done; gcc -shared -o lib.so *.o";
    // Alternating, one run of each mode per round; the middle column
    // tells the decisions' share of the overhead from the sandbox's.
    let modes = [Mode::Bare, Mode::Session, Mode::Sandboxed];
    let mut walls: [Vec<f64>; 3] = Default::default();
    for _ in 0..reps {
        for (mode, walls) in modes.into_iter().zip(&mut walls) {
            let run = run_shells(
                tools,
                &tools.wrapper,
                mode,
                by_path("/", Decision::Run),
                &[script.into()],
                &dir,
                0,
            )
            .await?;
            if run.errors > 0 {
                bail!("the workload failed");
            }
            walls.push(run.wall.as_secs_f64());
        }
    }
    let [bare, intercepted, sandboxed] = walls.map(|mut walls| median(&mut walls));
    println!("## Workload: compile 50 C files with gcc from a zsh loop, then link ({reps} alternating runs)\n");
    println!(
        "| bare s | intercepted s | intercepted + sandboxed s | overhead, intercepted | overhead, intercepted + sandboxed |\n|---|---|---|---|---|"
    );
    println!(
        "| {bare:.3} | {intercepted:.3} | {sandboxed:.3} | {:.1}% | {:.1}% |\n",
        100.0 * (intercepted - bare) / bare,
        100.0 * (sandboxed - bare) / bare
    );
    Ok(())
}
