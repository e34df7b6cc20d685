//! `execgate mcp` against the official MCP Python SDK (installed in
//! target/venv-mcp by scripts/setup-python.sh): tests/mcp/client.py
//! initializes, lists tools, runs and types into processes, answers
//! elicitations (accept and decline, for a command and for a connection
//! from its limited sandbox), makes denied and malformed calls,
//! then disconnects (and, with a second server, sends SIGTERM) and checks
//! that every process is gone, escalated children included.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

#[test]
fn the_official_python_client_passes_every_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var_os("EXECGATE_MCP_PYTHON").map_or_else(
        || root.join("target/venv-mcp/bin/python"),
        std::path::PathBuf::from,
    );
    assert!(
        python.exists(),
        "the MCP Python SDK is not installed at {}: run scripts/setup-python.sh",
        python.display()
    );
    let binary = env!("CARGO_BIN_EXE_execgate");
    // Not under /tmp, which the default profile makes writable.
    let dir = tempfile::Builder::new()
        .prefix("execgate-mcp")
        .tempdir_in("/var/tmp")
        .unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    std::fs::write(ws.join("precious"), "keep").unwrap();
    // The session's profile is limited: the client checks a network
    // question too. A late denial only fails the connection, so that the
    // client sees the proxy's 403.
    let config = dir.path().join("config/execgate");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.toml"),
        "default_profile = \"fetch\"\non_network_denial = \"fail-connection\"\n\
         [profiles.fetch]\nextends = \"workspace-write\"\nnetwork = \"limited\"\n",
    )
    .unwrap();
    let rules = dir.path().join("mcp.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"touch\"], decision = \"prompt\", \
         justification = \"touching needs a person\")\n\
         prefix_rule(pattern = [\"rm\"], decision = \"forbidden\", \
         justification = \"never remove files here\")\n\
         prefix_rule(pattern = [\"sleep\", [\"1234.5\", \"1234.7\"]], decision = \"allow\")\n",
    )
    .unwrap();
    let output = Command::new(&python)
        .arg(root.join("tests/mcp/client.py"))
        .arg(binary)
        .arg(&ws)
        .arg(&rules)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("all checks passed"),
        "{stdout}\n{stderr}"
    );
}
