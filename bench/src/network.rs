//! The managed network's costs (issue 15): a large download and many new
//! connections from a loopback origin, through the proxy of a `limited`
//! sandbox against the same client on the host going direct; and what a
//! limited sandbox adds to a command's start over a restricted one.
//!
//! The origin is this process's own server on 127.0.0.1 (the profile names
//! it exactly, the only way a non-public address is allowed). The client is
//! `execgate-netbench-client`, the same binary on both paths.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use execgate_core_bridge::server::sandbox::ProfileSet;
use execgate_core_bridge::{RunOptions, ShellSession, ShellSessionConfig};
use execgate_escalate_server::{Decision, ExecContext};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{median, spread};

pub(crate) struct Paths<'a> {
    pub(crate) wrapper: &'a Path,
    pub(crate) helper: &'a Path,
    pub(crate) zsh: &'a Path,
    pub(crate) client: PathBuf,
    pub(crate) scratch: &'a Path,
}

const PROFILES: &str = r#"
[profiles.limited]
extends = "workspace-write"
network = { mode = "limited", domains = { "127.0.0.1" = "allow" } }
"#;

fn session(paths: &Paths<'_>, profile: &str) -> Result<ShellSession> {
    let tools = execgate_core_bridge::Tools {
        zsh: paths.zsh.to_path_buf(),
        wrapper: paths.wrapper.to_path_buf(),
        sandbox_helper: paths.helper.to_path_buf(),
    };
    let run_all = Arc::new(|_: &ExecContext| Decision::Run);
    let mut config = ShellSessionConfig::new(paths.scratch, tools, run_all);
    let mut profiles = ProfileSet::default();
    profiles.add_toml(PROFILES, None)?;
    config.profile = profiles.get(profile)?;
    config.profile_name = profile.into();
    Ok(ShellSession::start(config)?)
}

/// Serves `/bytes/N` (N zero bytes) and anything else as one byte.
async fn origin() -> Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let mut head = Vec::new();
                let mut buffer = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => head.extend_from_slice(&buffer[..read]),
                    }
                }
                let text = String::from_utf8_lossy(&head);
                let path = text.split_whitespace().nth(1).unwrap_or("/");
                let length: u64 = path
                    .strip_prefix("/bytes/")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1);
                let header = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
                );
                if stream.write_all(header.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![0u8; 256 * 1024];
                let mut left = length;
                while left > 0 {
                    let now = left.min(chunk.len() as u64) as usize;
                    if stream.write_all(&chunk[..now]).await.is_err() {
                        return;
                    }
                    left -= now as u64;
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(port)
}

/// The client's output line, run on the host.
async fn direct(client: &Path, args: &[String]) -> Result<String> {
    let output = tokio::process::Command::new(client)
        .args(args)
        .output()
        .await?;
    if !output.status.success() {
        bail!(
            "direct client failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The client's output line, run inside the limited sandbox through its
/// proxy.
async fn proxied(session: &ShellSession, client: &Path, args: &[String]) -> Result<String> {
    let command = format!(
        "{} {} \"${{EXECGATE_PROXY#http://}}\"",
        client.display(),
        args.join(" ")
    );
    let outcome = session.run(&command, RunOptions::default())?.wait().await?;
    if outcome.status.code() != 0 {
        bail!(
            "proxied client failed: {}",
            String::from_utf8_lossy(&outcome.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&outcome.stdout).trim().to_owned())
}

pub(crate) async fn network(paths: &Paths<'_>, rounds: usize, gib: u64) -> Result<()> {
    let port = origin().await?;
    let origin = format!("127.0.0.1:{port}");
    let limited = session(paths, "limited")?;
    let client = &paths.client;

    let bytes = gib * 1024 * 1024 * 1024;
    println!("## Network: {gib} GiB from a loopback origin, direct vs through the proxy ({rounds} alternating rounds)\n");
    let download = vec!["download".into(), origin.clone(), format!("/bytes/{bytes}")];
    let (mut direct_rates, mut proxied_rates) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for (through_proxy, rates) in [(false, &mut direct_rates), (true, &mut proxied_rates)] {
            let line = if through_proxy {
                proxied(&limited, client, &download).await?
            } else {
                direct(client, &download).await?
            };
            let mut fields = line.split_whitespace();
            let read: u64 = fields.next().context("no byte count")?.parse()?;
            let seconds: f64 = fields.next().context("no time")?.parse()?;
            // The count includes the response's head.
            if read < bytes {
                bail!("read {read} bytes of {bytes}");
            }
            rates.push(read as f64 / seconds / (1024.0 * 1024.0));
        }
    }
    let (direct_median, proxied_median) = (median(&mut direct_rates), median(&mut proxied_rates));
    let (dmin, dmax) = spread(&direct_rates);
    let (pmin, pmax) = spread(&proxied_rates);
    println!("| path | MiB/s (median) | spread |");
    println!("|---|---|---|");
    println!("| direct | {direct_median:.0} | {dmin:.0}-{dmax:.0} |");
    println!("| through the proxy | {proxied_median:.0} | {pmin:.0}-{pmax:.0} |");
    println!(
        "\nThrough the proxy: {:.0}% of direct (target >= 80%).\n",
        100.0 * proxied_median / direct_median
    );

    let (connections, concurrency) = (64 * 40, 64);
    println!(
        "## Network: connect to first byte, {connections} connections, {concurrency} at a time ({rounds} alternating rounds)\n"
    );
    let latency = vec![
        "latency".into(),
        origin.clone(),
        "/ping".into(),
        connections.to_string(),
        concurrency.to_string(),
    ];
    let mut rows: Vec<(bool, [f64; 4])> = Vec::new();
    for _ in 0..rounds {
        for through_proxy in [false, true] {
            let line = if through_proxy {
                proxied(&limited, client, &latency).await?
            } else {
                direct(client, &latency).await?
            };
            let values: Vec<f64> = line
                .split_whitespace()
                .map(|micros| micros.parse::<f64>().map(|us| us / 1000.0))
                .collect::<Result<_, _>>()?;
            let values: [f64; 4] = values
                .try_into()
                .map_err(|_| anyhow::anyhow!("bad line {line}"))?;
            rows.push((through_proxy, values));
        }
    }
    println!("| path | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    let mut medians = [[0.0; 4]; 2];
    for (index, (through_proxy, name)) in [(false, "direct"), (true, "through the proxy")]
        .into_iter()
        .enumerate()
    {
        for column in 0..4 {
            let mut values: Vec<f64> = rows
                .iter()
                .filter(|(proxy, _)| *proxy == through_proxy)
                .map(|(_, row)| row[column])
                .collect();
            medians[index][column] = median(&mut values);
        }
        let [p50, p90, p99, max] = medians[index];
        println!("| {name} | {p50:.3} | {p90:.3} | {p99:.3} | {max:.3} |");
    }
    println!(
        "\nAdded by the proxy: p50 {:.3} ms (target <= 1), p99 {:.3} ms (target <= 5).\n",
        medians[1][0] - medians[0][0],
        medians[1][2] - medians[0][2]
    );
    limited.shutdown().await;

    println!("## P3 (limited): `true` in a one-shot command, restricted vs limited sandbox ({} alternating runs)\n", rounds * 10);
    let restricted = session(paths, "workspace-write")?;
    let limited = session(paths, "limited")?;
    let (mut restricted_ms, mut limited_ms) = (Vec::new(), Vec::new());
    for round in 0..rounds * 10 + 2 {
        for (which, times) in [
            (&restricted, &mut restricted_ms),
            (&limited, &mut limited_ms),
        ] {
            let started = Instant::now();
            which.run("true", RunOptions::default())?.wait().await?;
            if round >= 2 {
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    let (r, l) = (median(&mut restricted_ms), median(&mut limited_ms));
    println!("| sandbox | ms (median) | spread |");
    println!("|---|---|---|");
    let (rmin, rmax) = spread(&restricted_ms);
    let (lmin, lmax) = spread(&limited_ms);
    println!("| restricted | {r:.2} | {rmin:.2}-{rmax:.2} |");
    println!("| limited | {l:.2} | {lmin:.2}-{lmax:.2} |");
    println!("\nLimited adds {:.2} ms (target <= 5).", l - r);
    restricted.shutdown().await;
    limited.shutdown().await;
    Ok(())
}
