//! The interactive shell's startup files: the user's own, read as `zsh -i`
//! reads them, then execgate's right-prompt marker.
//!
//! zsh reads `.zshenv` and `.zshrc` from `$ZDOTDIR`. The session points
//! `ZDOTDIR` at a directory of its own (in the session's private, read-only
//! tool directory) whose files source the user's from the original
//! `$ZDOTDIR` (or `$HOME`), hand `ZDOTDIR` back, and then add the marker, so
//! that it comes after whatever the user's `.zshrc` does to the prompt. The
//! marker is a `precmd` hook (prompt themes rebuild `RPROMPT` before every
//! prompt); a user turns it off with `EXECGATE_PROMPT_MARKER=0` in their
//! `.zshrc` or environment.

use std::ffi::OsString;
use std::path::Path;

/// How the interactive shell starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interactive {
    pub startup_files: StartupFiles,
    pub prompt_marker: PromptMarker,
}

/// Whether the user's zsh startup files are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StartupFiles {
    /// `.zshenv` and `.zshrc` from `$ZDOTDIR` or `$HOME`, as `zsh -i` does.
    #[default]
    User,
    /// None of them (`execgate shell --no-rcs`).
    Skipped,
}

impl Interactive {
    /// The directory these choices' files live in, under the session's own.
    pub(crate) fn dir_name(&self) -> &'static str {
        match (self.startup_files, self.prompt_marker) {
            (StartupFiles::User, PromptMarker::Shown) => "user",
            (StartupFiles::User, PromptMarker::Hidden) => "user-unmarked",
            (StartupFiles::Skipped, PromptMarker::Shown) => "none",
            (StartupFiles::Skipped, PromptMarker::Hidden) => "none-unmarked",
        }
    }
}

/// Whether the right prompt shows `[execgate:PROFILE]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PromptMarker {
    #[default]
    Shown,
    Hidden,
}

/// Holds the user's `ZDOTDIR` while ours is in place; empty when the user
/// had none (zsh then reads `$HOME`).
const USER_ZDOTDIR: &str = "_EXECGATE_USER_ZDOTDIR";
/// Set when the user had a `ZDOTDIR`, so that it is restored rather than
/// left unset.
const USER_ZDOTDIR_SET: &str = "_EXECGATE_USER_ZDOTDIR_SET";
/// `0` turns the right-prompt marker off.
pub const PROMPT_MARKER_VARIABLE: &str = "EXECGATE_PROMPT_MARKER";

/// zsh's `suspend` stops nothing in the sandbox (the shell went on at
/// once) and said nothing (probe 219): it says so, and fails. Before the
/// user's `.zshrc`, which may define its own.
const SUSPEND: &str = "suspend() {\n\
     \x20   print -ru2 -- 'execgate: suspend: a shell in execgate'\\''s sandbox cannot be \
     suspended; Ctrl-Z suspends the jobs it runs, and exit ends the session'\n\
     \x20   return 1\n\
     }\n";

/// Writes the startup files into `dir` (created if missing).
pub(crate) fn write(dir: &Path, options: &Interactive) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let dir_text = quoted(dir);
    let (source_env, source_rc) = match options.startup_files {
        StartupFiles::User => (
            "[[ -r $ZDOTDIR/.zshenv ]] && builtin source \"$ZDOTDIR/.zshenv\"\n",
            "[[ -r ${ZDOTDIR:-$HOME}/.zshrc ]] && builtin source \"${ZDOTDIR:-$HOME}/.zshrc\"\n",
        ),
        StartupFiles::Skipped => ("", ""),
    };
    let zshenv = format!(
        "# Written by execgate: the user's .zshenv, then back to execgate's ZDOTDIR.\n\
         if [[ -n ${USER_ZDOTDIR_SET} ]]; then ZDOTDIR=${USER_ZDOTDIR}; else ZDOTDIR=$HOME; fi\n\
         {source_env}\
         # The user's .zshenv may have moved ZDOTDIR: their .zshrc is there.\n\
         if [[ -n ${USER_ZDOTDIR_SET} || $ZDOTDIR != $HOME ]]; then\n\
         \x20   {USER_ZDOTDIR}=$ZDOTDIR {USER_ZDOTDIR_SET}=1\n\
         fi\n\
         ZDOTDIR={dir_text}\n"
    );
    let marker_default = match options.prompt_marker {
        PromptMarker::Shown => 1,
        PromptMarker::Hidden => 0,
    };
    let zshrc = format!(
        "# Written by execgate: the user's .zshrc, then execgate's prompt marker.\n\
         if [[ -n ${USER_ZDOTDIR_SET} ]]; then ZDOTDIR=${USER_ZDOTDIR}; else unset ZDOTDIR; fi\n\
         unset {USER_ZDOTDIR} {USER_ZDOTDIR_SET}\n\
         {SUSPEND}\
         {source_rc}\
         if [[ ${{{PROMPT_MARKER_VARIABLE}:-{marker_default}}} != 0 ]]; then\n\
         \x20   _execgate_prompt_marker() {{\n\
         \x20       [[ ${{{PROMPT_MARKER_VARIABLE}:-{marker_default}}} == 0 || $RPROMPT == *'[execgate:'* ]] && return\n\
         \x20       RPROMPT=\"${{RPROMPT:+$RPROMPT }}%F{{yellow}}[execgate:${{EXECGATE_PROFILE}}]%f\"\n\
         \x20   }}\n\
         \x20   precmd_functions+=(_execgate_prompt_marker)\n\
         fi\n"
    );
    std::fs::write(dir.join(".zshenv"), zshenv)?;
    std::fs::write(dir.join(".zshrc"), zshrc)
}

/// The variables that make zsh read the files in `dir`: `ZDOTDIR`, and the
/// user's own `ZDOTDIR` (from `env`, the shell's environment) to go back to.
pub(crate) fn environment(dir: &Path, env: &[(OsString, OsString)]) -> Vec<(OsString, OsString)> {
    let mut variables = vec![("ZDOTDIR".into(), dir.as_os_str().to_owned())];
    if let Some((_, user)) = env.iter().find(|(name, _)| name == "ZDOTDIR") {
        variables.push((USER_ZDOTDIR.into(), user.clone()));
        variables.push((USER_ZDOTDIR_SET.into(), "1".into()));
    }
    variables
}

/// `path` as one single-quoted zsh word.
fn quoted(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', r"'\''"))
}
