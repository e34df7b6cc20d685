//! `execgate man DIR`: a page per command, as clap_mangen renders the
//! command-line definitions, and on `execgate(1)` the sections a man page
//! reader looks for that no option's help holds: exit statuses, the
//! keys that answer a question, the environment, files (probe 219: the pages had none of them).
//!
//! It must never describe what the program does not do: each line here
//! restates what the README says and the CLI tests check.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap_mangen::roff::{bold, roman, Roff};

/// A section of `execgate(1)`: its title and its items, each a term and
/// what it means.
type Section = (&'static str, &'static [(&'static str, &'static str)]);

const EXIT_STATUS: Section = (
    "EXIT STATUS",
    &[
        (
            "run",
            "The command's status, as zsh -c reports it: 126 for a program the policy \
             denied (execgate: denied: on stderr), 127 for one not found, 128+n for one \
             killed by signal n; 137 for a command aborted with ! at a question; 126 when \
             a limited network denied a connection of the command after a person was \
             asked (on_network_denial = cancel, the default).",
        ),
        ("shell", "The shell's status when it exits."),
        (
            "run, shell, mcp ended by a signal",
            "Sent SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2 or SIGALRM (unless it \
             was ignored when execgate started), or, for run, aborted at a question by Ctrl-C or \
             Ctrl-\\, execgate ends the session and everything it started, then dies of \
             that signal (SIGINT and SIGQUIT for the keys), without a core: a shell \
             around it sees the signal.",
        ),
        (
            "audit",
            "0; 1 when a line was not a record, a log could not be read, or records or a \
             rotated file are missing (said on stderr).",
        ),
        ("policy lint", "0; 1 with warnings only; 2 with an error."),
        (
            "doctor",
            "0 when the machine is ready to run sessions; 1 when it is not.",
        ),
        (
            "125",
            "execgate itself failed (a config, rules file, profile or skill it cannot \
             load, a machine that cannot sandbox, a sandbox bubblewrap could not set \
             up), and says why on stderr.",
        ),
        (
            "2",
            "The command line could not be read; the usage is printed.",
        ),
    ],
);

const QUESTIONS: Section = (
    "QUESTIONS",
    &[
        (
            "y",
            "Once: this exec runs as the rule says (or, at a network question, the \
             connection is made).",
        ),
        (
            "a",
            "The same for the rest of the session (for this command, script or host).",
        ),
        (
            "n, Enter",
            "Declined: the exec is denied (status 126), the connection refused, or the \
             command runs without the permissions it requested.",
        ),
        (
            "d",
            "At a network question: the host is denied for the rest of the session.",
        ),
        (
            "!",
            "Abort: the command that asked is killed with everything it started (in \
             shell, the job that asked; for a $(...) typed at the prompt, the shell).",
        ),
        ("v", "Shows the arguments the question cut short."),
        (
            "Ctrl-C, Ctrl-\\",
            "Abort, as ! does (at a network question, deny). While a question holds \
             the terminal they are keys, not signals.",
        ),
    ],
);

const ENVIRONMENT: Section = (
    "ENVIRONMENT",
    &[
        (
            "EXECGATE_LOG",
            "Which telemetry events are printed on stderr (or into --log-file), in \
             tracing's filter syntax, for example execgate=info.",
        ),
        (
            "EXECGATE_ZSH, EXECGATE_WRAPPER_BINARY, EXECGATE_SANDBOX_HELPER",
            "The patched zsh, the exec wrapper and the sandbox helper to use instead of \
             those found beside execgate or installed with it.",
        ),
        (
            "EXECGATE_PROMPT_MARKER",
            "0 in .zshrc: no [execgate:PROFILE] on the right of execgate shell's prompt.",
        ),
        (
            "XDG_CONFIG_HOME, XDG_STATE_HOME, HOME",
            "Where the default config file and audit log are (see FILES).",
        ),
        (
            "TMPDIR",
            "The session's temp directory (:tmpdir in profiles) when it is a directory \
             named as one (tmp, *.tmp, ...), else /tmp (a TMPDIR named otherwise is \
             warned of).",
        ),
        (
            "EXECGATE_SCOPE",
            "How a session keeps its processes killable: cgroup (the default where \
             cgroups are delegated) or process-groups.",
        ),
    ],
);

const FILES: Section = (
    "FILES",
    &[
        (
            "$XDG_CONFIG_HOME/execgate/config.toml (~/.config/execgate/config.toml)",
            "The config file: profiles, default_profile, rules, skills, [audit] log. A \
             missing default file is fine; --config names another.",
        ),
        (
            "$XDG_STATE_HOME/execgate/audit.jsonl (~/.local/state/execgate/audit.jsonl)",
            "The audit log, one JSON record per line, unless the config's [audit] log or \
             --audit-log names another.",
        ),
    ],
);

const SEE_ALSO: &str = "zsh(1), bwrap(1), landlock(7), seccomp(2); README.md, the \
                        security model and the rules language.";

/// Writes a page per command into `dir`; `execgate.1` with the sections
/// above.
pub fn write_pages(command: clap::Command, dir: &Path) -> Result<i32> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cannot_write = || format!("cannot write the man pages into {}", dir.display());
    clap_mangen::generate_to(command.clone(), dir).with_context(cannot_write)?;
    let page = clap_mangen::Man::new(command.disable_help_subcommand(true));
    let mut text = Vec::new();
    page.render_title(&mut text)?;
    page.render_name_section(&mut text)?;
    page.render_synopsis_section(&mut text)?;
    page.render_description_section(&mut text)?;
    page.render_options_section(&mut text)?;
    page.render_subcommands_section(&mut text)?;
    let mut extra = Roff::new();
    for (title, items) in [EXIT_STATUS, QUESTIONS, ENVIRONMENT, FILES] {
        extra.control("SH", [title]);
        for (term, meaning) in items {
            extra.control("TP", []);
            extra.text([bold(*term)]);
            extra.text([roman(*meaning)]);
        }
    }
    extra.control("SH", ["SEE ALSO"]);
    extra.text([roman(SEE_ALSO)]);
    extra.to_writer(&mut text)?;
    page.render_version_section(&mut text)?;
    let path = dir.join(page.get_filename());
    std::fs::File::create(&path)
        .and_then(|mut file| file.write_all(&text))
        .with_context(cannot_write)?;
    Ok(0)
}
