//! P5: what grows. Decision latency of the rules policy against the number
//! of rules loaded, and the audit log's append cost as the file grows.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use execgate_audit::{AuditLog, AuditRecord, RecordOptions, Rotation};
use execgate_core_bridge::rules::RuleSet;
use execgate_core_bridge::server::{
    Decision, ExecContext, PeerCredentials, Policy, ResolvedExecutable, SessionEvent,
};
use execgate_core_bridge::{ExecPolicy, ExecPolicyConfig};

/// Rules files of `count` rules: every shape a large policy has.
/// `spread`: one rule per made-up program; `git`: all on one program, one
/// subcommand each (the index's hard case).
fn rules_file(dir: &Path, count: usize, shape: &str) -> Result<PathBuf> {
    let mut text = String::new();
    // The rule the measured request matches, first.
    text.push_str("prefix_rule(pattern = [\"git\", \"status\"], decision = \"allow\")\n");
    for index in 1..count {
        match shape {
            "spread" => text.push_str(&format!(
                "prefix_rule(pattern = [\"tool{index}\", \"run\"], decision = \"prompt\")\n"
            )),
            _ => text.push_str(&format!(
                "prefix_rule(pattern = [\"git\", \"sub{index}\", [\"a\", \"b\"]], decision = \"prompt\")\n"
            )),
        }
    }
    let file = dir.join(format!("{shape}-{count}.rules"));
    std::fs::write(&file, text)?;
    Ok(file)
}

fn request(argv: &[&str]) -> ExecContext {
    ExecContext {
        session_id: "bench".into(),
        request_id: 1,
        parent_request_id: None,
        peer: PeerCredentials {
            pid: std::process::id() as i32,
            uid: 0,
            gid: 0,
        },
        executable: ResolvedExecutable {
            requested_path: PathBuf::from("/usr/bin/git"),
            canonical_path: PathBuf::from("/usr/bin/git"),
            device: 1,
            inode: 1,
            mode: 0o100755,
            uid: 0,
            gid: 0,
        },
        argv: argv.iter().map(OsString::from).collect(),
        cwd: PathBuf::from("/"),
        working_directory: Err("not held in this benchmark".into()),
        env: Vec::new(),
        received: Instant::now(),
        request_read: Instant::now(),
        sandbox: None,
        escalation_env: Arc::from([]),
        question: Default::default(),
    }
}

/// Mean time per decision over `rounds`.
async fn mean_decision(policy: &ExecPolicy, request: &ExecContext, rounds: usize) -> Duration {
    let start = Instant::now();
    for _ in 0..rounds {
        let verdict = policy.decide(request).await;
        std::hint::black_box(&verdict);
    }
    start.elapsed() / rounds as u32
}

pub async fn p5(scratch: &Path, quick: bool) -> Result<()> {
    let rounds = if quick { 20_000 } else { 100_000 };
    println!("## P5: growth\n");
    println!("### Decision latency against rule count ({rounds} decisions each, in process)\n");
    println!("| rules | shape | load ms | matching request µs | unmatched request µs |");
    println!("|---|---|---|---|---|");
    let matching = request(&["git", "status", "--short"]);
    let unmatched = request(&["git", "sub-none", "x"]);
    let mut baseline = None;
    let mut worst: f64 = 0.0;
    for shape in ["spread", "git"] {
        for count in [10, 1_000, 10_000] {
            let file = rules_file(scratch, count, shape)?;
            let started = Instant::now();
            let rules = RuleSet::load(&[&file])?;
            let load = started.elapsed();
            let policy = ExecPolicy::new(ExecPolicyConfig {
                rules: Arc::new(rules),
                ..ExecPolicyConfig::default()
            })?;
            let verdict = policy.decide(&matching).await;
            anyhow::ensure!(
                matches!(verdict.decision, Decision::Escalate(_)),
                "the measured request must match its rule"
            );
            let hit = mean_decision(&policy, &matching, rounds).await;
            let miss = mean_decision(&policy, &unmatched, rounds).await;
            let (hit_us, miss_us) = (hit.as_secs_f64() * 1e6, miss.as_secs_f64() * 1e6);
            println!(
                "| {count} | {shape} | {:.1} | {hit_us:.2} | {miss_us:.2} |",
                load.as_secs_f64() * 1e3
            );
            if count == 10 && shape == "spread" {
                baseline = Some(hit_us);
            }
            if count == 10_000 {
                worst = worst.max(hit_us);
            }
        }
    }
    if let Some(baseline) = baseline {
        println!(
            "\n10,000 rules vs 10 (matching request, worst shape): {:.2}x\n",
            worst / baseline
        );
    }
    audit_growth(scratch, quick)
}

/// Appends to one log in blocks and reports each block's mean append time.
fn audit_growth(scratch: &Path, quick: bool) -> Result<()> {
    let blocks = if quick { 4 } else { 10 };
    let per_block = 10_000;
    let path = scratch.join("growth.jsonl");
    let log = AuditLog::open(
        &path,
        Rotation {
            max_bytes: u64::MAX,
            keep: 1,
        },
    )?;
    let event = SessionEvent::Decided {
        request: Arc::new(request(&["git", "status", "--short"])),
        decision: Decision::Run,
        provenance: Default::default(),
    };
    let record = AuditRecord::of(
        &event,
        "bench",
        std::time::SystemTime::now(),
        &RecordOptions::default(),
    );
    println!("### Audit append cost as the log grows ({per_block} records per block)\n");
    println!("| records before | file MiB before | append µs (written) | append µs (synced) |");
    println!("|---|---|---|---|");
    for block in 0..blocks {
        let before = std::fs::metadata(&path)?.len();
        let started = Instant::now();
        for _ in 0..per_block {
            log.append(&record, false)?;
        }
        let buffered = started.elapsed() / per_block as u32;
        // A synced append (what an escalation waits for), 100 of them.
        let started = Instant::now();
        for _ in 0..100 {
            log.append(&record, true)?;
        }
        let synced = started.elapsed() / 100;
        println!(
            "| {} | {:.1} | {:.2} | {:.0} |",
            block * (per_block + 100),
            before as f64 / (1024.0 * 1024.0),
            buffered.as_secs_f64() * 1e6,
            synced.as_secs_f64() * 1e6
        );
    }
    std::fs::remove_file(&path)?;
    Ok(())
}
