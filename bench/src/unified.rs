//! Unified exec's costs (issue 16), measured in one embedding session in
//! workspace-write: `exec_command` of `true` beside the one-shot path
//! (`ShellSession::run`) and `execgate run -- true`; what an idle live
//! process costs the server's memory; and decision latency while 64 live
//! processes run, polled in a loop or not.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use execgate_core_bridge::{
    ExecOptions, ExecResponse, ExecStdio, RunOptions, ShellSession, ShellSessionConfig,
};
use execgate_escalate_server::{Decision, ExecContext, SessionEvent};

pub(crate) struct Paths<'a> {
    pub(crate) wrapper: &'a Path,
    pub(crate) helper: &'a Path,
    pub(crate) zsh: &'a Path,
    /// The release `execgate` binary, for the `execgate run -- true` column.
    pub(crate) execgate: Option<PathBuf>,
    pub(crate) scratch: &'a Path,
}

type Latencies = Arc<Mutex<Vec<Duration>>>;

fn start(paths: &Paths<'_>, latencies: &Latencies) -> Result<ShellSession> {
    let tools = execgate_core_bridge::Tools {
        zsh: paths.zsh.to_path_buf(),
        wrapper: paths.wrapper.to_path_buf(),
        sandbox_helper: paths.helper.to_path_buf(),
    };
    let run_all = Arc::new(|_: &ExecContext| Decision::Run);
    let mut config = ShellSessionConfig::new(paths.scratch, tools, run_all);
    let sink = latencies.clone();
    config.events = Some(Arc::new(move |event: &SessionEvent| {
        if let SessionEvent::Decided { request, .. } = event {
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(request.request_read.elapsed());
        }
    }));
    Ok(ShellSession::start(config)?)
}

fn percentile(values: &mut [Duration], p: f64) -> f64 {
    values.sort();
    let index = ((values.len() as f64 - 1.0) * p).round() as usize;
    values
        .get(index)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

pub(crate) async fn unified(paths: &Paths<'_>, rounds: usize) -> Result<()> {
    let latencies = Latencies::default();
    let session = start(paths, &latencies)?;
    println!("## Unified exec: `true` by each path ({rounds} alternating rounds)\n");
    let (mut one_shot, mut unified, mut cli) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds + 2 {
        let started = Instant::now();
        session.run("true", RunOptions::default())?.wait().await?;
        let run_took = started.elapsed();
        let started = Instant::now();
        let response = session.exec_command("true", ExecOptions::default()).await?;
        let exec_took = started.elapsed();
        if !matches!(response, ExecResponse::Exited(_)) {
            bail!("exec_command of true did not exit: {response:?}");
        }
        let mut cli_took = None;
        if let Some(execgate) = &paths.execgate {
            let started = Instant::now();
            let status = tokio::process::Command::new(execgate)
                .args(["run", "--approval", "deny", "--cwd"])
                .arg(paths.scratch)
                .args(["--", "true"])
                .env("XDG_CONFIG_HOME", paths.scratch.join("no-config"))
                .env("XDG_STATE_HOME", paths.scratch.join("state"))
                .status()
                .await?;
            if !status.success() {
                bail!("execgate run -- true failed: {status}");
            }
            cli_took = Some(started.elapsed());
        }
        // The first two rounds warm the caches.
        if round >= 2 {
            one_shot.push(run_took);
            unified.push(exec_took);
            cli.extend(cli_took);
        }
    }
    let exec_p50 = percentile(&mut unified, 0.5);
    let cli_p50 = percentile(&mut cli, 0.5);
    println!("| path | p50 ms | p90 ms |");
    println!("|---|---|---|");
    println!(
        "| `ShellSession::run(\"true\")` (one-shot, in process) | {:.2} | {:.2} |",
        percentile(&mut one_shot, 0.5),
        percentile(&mut one_shot, 0.9)
    );
    println!(
        "| `exec_command(\"true\")` | {exec_p50:.2} | {:.2} |",
        percentile(&mut unified, 0.9)
    );
    if !cli.is_empty() {
        println!(
            "| `execgate run -- true` (a process) | {cli_p50:.2} | {:.2} |",
            percentile(&mut cli, 0.9)
        );
        println!(
            "\nratio exec_command / execgate run: {:.2}\n",
            exec_p50 / cli_p50
        );
    } else {
        println!("\n(no --execgate=PATH: the `execgate run` column is left out)\n");
    }

    println!("## Unified exec: 64 idle live processes, server memory\n");
    println!("| stdio | RSS before KiB | RSS after KiB | per process KiB |");
    println!("|---|---|---|---|");
    for (name, stdio) in [("pipes", ExecStdio::Pipes), ("pty", ExecStdio::Terminal)] {
        let before = super::rss_kib()?;
        for _ in 0..64 {
            let options = ExecOptions {
                stdio,
                yield_time: Duration::from_millis(250),
                ..ExecOptions::default()
            };
            let response = session.exec_command("sleep 600", options).await?;
            if let ExecResponse::Exited(exited) = response {
                bail!("sleep 600 ended at once: {exited:?}");
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = super::rss_kib()?;
        println!(
            "| {name} | {before} | {after} | {:.1} |",
            (after.saturating_sub(before)) as f64 / 64.0
        );
        for process in session.list() {
            session.kill(process.process_id).await?;
        }
    }

    println!("\n## Unified exec: decisions while 64 live processes exec `/bin/true` every 0.1 s\n");
    println!(
        "| polling | decisions | decision p50 ms | decision p99 ms | poll p50 ms | poll p99 ms |"
    );
    println!("|---|---|---|---|---|---|");
    let mut ids = Vec::new();
    for _ in 0..64 {
        let options = ExecOptions {
            yield_time: Duration::from_millis(250),
            ..ExecOptions::default()
        };
        let response = session
            .exec_command("while true; do /bin/true; sleep 0.1; done", options)
            .await?;
        if let ExecResponse::Exited(exited) = response {
            bail!("the exec loop ended at once: {exited:?}");
        }
        ids.push(response.process_id());
    }
    for polling in [false, true] {
        latencies.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let mut polls = Vec::new();
        let until = Instant::now() + Duration::from_secs(8);
        while Instant::now() < until {
            if polling {
                for id in &ids {
                    let started = Instant::now();
                    session.write_stdin(*id, b"", Duration::ZERO, 4096).await?;
                    polls.push(started.elapsed());
                }
            } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let mut decided = std::mem::take(&mut *latencies.lock().unwrap_or_else(|e| e.into_inner()));
        println!(
            "| {} | {} | {:.3} | {:.3} | {} | {} |",
            if polling {
                "every process, in a loop"
            } else {
                "none"
            },
            decided.len(),
            percentile(&mut decided, 0.5),
            percentile(&mut decided, 0.99),
            if polling {
                format!("{:.3}", percentile(&mut polls, 0.5))
            } else {
                "-".into()
            },
            if polling {
                format!("{:.3}", percentile(&mut polls, 0.99))
            } else {
                "-".into()
            },
        );
    }
    session.shutdown().await;
    println!(
        "\nDecision latency measured in the server from having read the whole request (as \
         P2's *decision*); memory is this process's resident set (the server and core-bridge \
         live in it).\n"
    );
    Ok(())
}
