//! Programs that read what to run from files, and the check that keeps
//! them from leaving the sandbox when the sandbox could have written those
//! files.
//!
//! An allowed `git status` runs what the repository's config says
//! (`core.fsmonitor`, hooks, `core.pager`, `diff.external`, filter
//! drivers, included config files); `make` runs its Makefile, `npm` its
//! `package.json` scripts, `cargo` its build scripts and `.cargo/config.toml`,
//! `pip` a package's `setup.py`, `mvn` its `.mvn/jvm.config`, an interpreter
//! its script. Escalating such a
//! program out of the sandbox escalates whatever those files say, so
//! [`planted_instructions`] names the first place the sandbox could have
//! planted them, and the policy refuses the escalation (the exec runs in
//! place, inside the sandbox).
//!
//! The rule is deliberately simple, so that it is easy to explain and hard
//! to get wrong:
//!
//! - Programs that search their working directory (and for most, its
//!   ancestors: git's repository discovery, cargo's workspace and config
//!   search, npm's package root, Python's `sys.path`) are refused when the
//!   working directory or any ancestor up to `/` is writable from the
//!   sandbox: a repository, Makefile or `package.json` could have been
//!   created there, even during an approval. So are they when a writable
//!   root lies inside the project or a git directory, or a link the host
//!   left there leads into one or to a directory above one
//!   (`Makefile.inc -> /w/x`, `.git/hooks -> /w/hooks`, `sub -> /w`): only
//!   the entries of the working directory, of each directory above it in
//!   the project that holds a build file or repository, and of a git
//!   directory and its `hooks`, `info` and `modules` are looked at, not
//!   deeper (`sub/dir/x.mk -> /w` is not seen), and a directory with more
//!   than [`MOST_ENTRIES`] entries, or past the request's
//!   [`MOST_ENTRIES_PER_REQUEST`], is refused rather than read in part.
//!   A repository's submodules (`.git/modules`) and `commondir` are judged
//!   as it is.
//! - Arguments are walked as the program reads them, and every word the
//!   walk cannot show to be harmless is judged as a path it may read:
//!   directories and files named by options (`git -C`, `--git-dir`, `git
//!   init --separate-git-dir`, `make -f`, `npm --prefix`, `cargo
//!   --manifest-path`), the repository a local path or `file://` address
//!   names among the operands of `git push`, `fetch`, `pull`,
//!   `ls-remote`, `archive` or `clone`, or in any word (git runs there),
//!   every operand (a
//!   script and its arguments, pip's packages, git's pathspecs), the value
//!   of `NAME=value` and `--option=value` words, whatever is attached to an
//!   option the walk does not know, and the word after it (which the walk
//!   then takes for an operand). Only options listed as taking a plain
//!   value (`python -W ignore`, `bash -o posix`, `git --namespace name`)
//!   or program text (`-c`, `-e`) skip a word. Clustered short options are
//!   split (`make -sf file`), and an instruction's letter after one the
//!   walk does not know refuses (`-qx cmd`); `+` options count for shells.
//!   git's global options are all listed and an unknown one is refused, so
//!   the subcommand is never misread, and so is a subcommand in neither of
//!   its lists (an alias, `submodule--helper`, a `git-NAME` from `PATH`);
//!   `python -m pip` is judged as pip. A `file:` URL is judged as the path
//!   it names.
//! - Arguments that are instructions themselves are refused outright:
//!   `git -c`, `cargo --config`, `make --eval`, a variable on make's
//!   command line, `npm -c`, and git's per-subcommand ones (`clone
//!   -c`/`--template`/`-u`, `fetch --upload-pack`, `push --receive-pack`,
//!   `rebase -x`, `difftool -x`, `submodule foreach`, ...); so are those
//!   that write one for a later git (`git config NAME VALUE`, `remote
//!   add`, `submodule add`).
//! - Per-user and system configuration files the program reads
//!   (`~/.gitconfig`, `~/.npmrc`, `~/.cargo/config.toml`, ...) are checked
//!   for both the server's home and the one the request names, and so is
//!   every path git's configuration names, as git interpolates it (`~/`,
//!   `~user/` from the password database, `%(prefix)/` from the prefix
//!   its executable is under and from `/usr` and `/usr/local`). Each is
//!   judged by the writable roots, wherever it is: no program in the table
//!   is known to read a fixed path in a temporary directory.
//! - No escalation out of the sandbox takes the variables the sandboxed
//!   shell set (`GIT_*`, `HOME`, `npm_config_*`): it gets the session's
//!   environment (`escalate-server`'s `environment.rs`), so none is judged
//!   here; a `HOME` in the request names one more place to check.
//!
//! A path that does not exist is judged by its nearest existing ancestor:
//! what the sandbox cannot create cannot be planted. Programs not in the
//! table keep their behaviour. The table matches the canonical path's
//! basename, as the rules do.
//!
//! The walk errs towards refusing (a refused escalation still runs, in
//! place): a word that only looks like a path into a writable directory
//! (a commit message, a script's argument) refuses too. What it does not
//! read is the program text itself: `bash -c '. /w/x'` is judged by the
//! rule that matched it, not here.

use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// One program (or family) that reads its instructions from files.
struct InstructionReader {
    /// Canonical basenames it is known by.
    names: &'static [&'static str],
    /// Basename prefixes: `git-` for git's own commands, `python3.` for
    /// versioned interpreters.
    prefixes: &'static [&'static str],
    /// What it reads, for the refusal note.
    reads: &'static str,
    /// Searches its working directory and each ancestor.
    searches_upwards: bool,
    /// The options it knows (before its subcommand, for git).
    options: Options,
    /// Its options end at the first operand: git's global options end at
    /// the subcommand, an interpreter's at its script.
    options_end_at_operand: bool,
    /// An option it does not know is refused rather than judged (git fails
    /// on an unknown global option, so only a misread of ours could
    /// differ).
    refuses_unknown_options: bool,
    /// Its first operand is a subcommand with options of its own.
    subcommands: &'static [Subcommand],
    /// Options every subcommand may take beside its own (git's diff
    /// options, which `log`, `show` and `diff` share).
    subcommand_options: Options,
    /// With `subcommands`, those with nothing to judge but what every one
    /// reads; a subcommand in neither is refused.
    plain_subcommands: &'static [&'static str],
    /// Subcommands whose operands are a command they run (`rustup run`):
    /// instructions themselves.
    instruction_subcommands: &'static [&'static str],
    /// An operand anywhere that names one of `instruction_subcommands`
    /// is refused, not only the first: an option's value, a workspace's
    /// name (`yarn workspace web exec`) or a subcommand that runs another
    /// may come first.
    instructions_anywhere: bool,
    /// Its first operand is a program it runs with the rest (`npx`): an
    /// instruction.
    runs_its_operand: bool,
    /// Its own options hold after a plain subcommand too (npm's, where
    /// git's end at the subcommand).
    options_anywhere: bool,
    /// Shells: `+x`, `+o name` are options too.
    plus_options: bool,
    /// Reads more arguments from the file an `@file` word names (the
    /// JDK's tools), which the walk does not read: such a word is refused.
    argument_files: bool,
    /// Configuration files: `~/` from a home directory, `xdg:` from the
    /// XDG config directory, `$NAME/` from a variable, `@prefix/` from the
    /// program's installation prefix, or absolute.
    config_files: &'static [&'static str],
    /// Its configuration files include others (git's `[include]` and
    /// `[includeIf]`), and so does its repository's own `.git/config`.
    config_includes: bool,
    /// An operand `NAME=value` sets a variable the program runs (make's
    /// `SHELL=`, `.SHELLFLAGS=`, `CC=`): an instruction.
    assignments_instruct: bool,
    /// It replaces `${NAME}` in its arguments with the variable's value
    /// (npm's config): a word holding one names whatever the sandbox set
    /// the variable to, so it is refused.
    expands_variables: bool,
    /// It reads a `~` that starts a word or a value (`-C ~/p`,
    /// `--prefix=~/x`, `-f~/m`) as a home directory, which the check does
    /// not follow: such a word is refused.
    expands_home: bool,
    /// Its operands name projects it reads from their own directory (an
    /// interpreter's script: `sys.path` and `node_modules` start beside
    /// it; `pip install DIR`): for an interpreter the script, for the
    /// others each operand.
    operands_name_projects: bool,
}

/// What a program's options mean. Every word the walk does not skip
/// through one of these lists (operands, unknown options and their
/// attached values, `NAME=value` words) is judged as a path it may read,
/// so a list only makes the walk more precise, never less safe; the
/// lists that skip a word or a cluster's rest (`values`, `inline`,
/// `digits`, `attached`) are the ones to keep exact.
struct Options {
    /// A value that is a directory it then works in (and searches from);
    /// relative paths after it are taken from there.
    directory: &'static [&'static str],
    /// A value that names a file or directory it reads.
    path: &'static [&'static str],
    /// An instruction itself (a config value or command line it runs):
    /// refused outright.
    instruction: &'static [&'static str],
    /// A value that names a file or directory it writes: refused
    /// outright, whatever it names. Outside the sandbox the program writes
    /// with the user's rights wherever the sandbox points it (`git log
    /// --output=/r/.git/config` plants what the next git runs), and a
    /// place the sandbox may write can be made a link to one it may not
    /// between the check and the write.
    output: &'static [&'static str],
    /// The value is the program text (`-c`, `-e`): the rest are its
    /// arguments.
    inline: &'static [&'static str],
    /// The value names a module whose own table, if it has one, judges the
    /// rest (`python -m pip`).
    hand_over: &'static [&'static str],
    /// A value that is neither a path nor an instruction (`python -W
    /// ignore`, `bash -o posix`, `git --namespace name`).
    values: &'static [&'static str],
    /// A value judged as any word, the rest of a cluster else the next
    /// word (`perl -MModule`, `python -Xname=value`): knowing the letter
    /// keeps a cluster from being refused as one the walk cannot split.
    words: &'static [&'static str],
    /// Digits attached or none, then more options in a cluster (`perl
    /// -l0pe`).
    digits: &'static [&'static str],
    /// A value only ever attached, the rest of its cluster (`make -j4`,
    /// `-Oline`, `perl -i.bak`), judged as any word: the next word is
    /// never its value (a number there may be, `make -j 4`, and is judged
    /// as any word too).
    attached: &'static [&'static str],
    /// No value: in a cluster (`-sf`) the next letter is another option.
    flags: &'static [&'static str],
}

/// A subcommand's options and operands that are instructions themselves.
struct Subcommand {
    names: &'static [&'static str],
    options: Options,
    /// Operands that make it run a command line (`submodule foreach`).
    instruction_operands: &'static [&'static str],
    /// Its operands may name a repository on this machine that git runs
    /// in (`git push /r`: `receive-pack` runs `/r`'s hooks, and
    /// `upload-pack` reads its configuration): judged as `--git-dir` is.
    repository_operand: bool,
    /// Given a name and a value (`git config alias.st '!cmd'`), it writes
    /// configuration: the lasting form of `git -c`, an instruction for
    /// every later git.
    writes_configuration: bool,
    /// Operands after which it writes where the next one says (`bundle
    /// create FILE`, `worktree add DIR`): refused, as output options are.
    output_operands: &'static [&'static str],
    /// Its operands name files it writes (`mailinfo MSG PATCH`,
    /// `merge-file CURRENT ...`, `pack-objects BASE`): any is refused.
    operands_are_outputs: bool,
}

const NONE: &[&str] = &[];

/// A subcommand with nothing to judge beyond its options.
const SUBCOMMAND: Subcommand = Subcommand {
    names: NONE,
    options: OPTIONS,
    instruction_operands: NONE,
    repository_operand: false,
    writes_configuration: false,
    output_operands: NONE,
    operands_are_outputs: false,
};

const OPTIONS: Options = Options {
    directory: NONE,
    path: NONE,
    instruction: NONE,
    output: NONE,
    inline: NONE,
    hand_over: NONE,
    values: NONE,
    words: NONE,
    digits: NONE,
    attached: NONE,
    flags: NONE,
};

const READER: InstructionReader = InstructionReader {
    names: NONE,
    prefixes: NONE,
    reads: "",
    searches_upwards: false,
    options: OPTIONS,
    options_end_at_operand: false,
    refuses_unknown_options: false,
    subcommands: &[],
    subcommand_options: OPTIONS,
    plain_subcommands: NONE,
    instruction_subcommands: NONE,
    instructions_anywhere: false,
    runs_its_operand: false,
    options_anywhere: false,
    plus_options: false,
    argument_files: false,
    config_files: NONE,
    config_includes: false,
    assignments_instruct: false,
    expands_variables: false,
    expands_home: false,
    operands_name_projects: false,
};

/// What npm, its kin and their runners share.
const NPM_READER: InstructionReader = InstructionReader {
    reads: "package.json scripts and .npmrc",
    operands_name_projects: true,
    // A probe's `--prefix=/${TZ}`, with `TZ` set in the sandbox.
    expands_variables: true,
    expands_home: true,
    searches_upwards: true,
    options: NPM_OPTIONS,
    config_files: &[
        "~/.npmrc",
        "~/.yarnrc",
        "~/.yarnrc.yml",
        "xdg:pnpm/rc",
        "/etc/npmrc",
        "/usr/etc/npmrc",
        "/usr/local/etc/npmrc",
        // npm's global config when `PREFIX` names its prefix.
        "$PREFIX/etc/npmrc",
    ],
    ..READER
};

const NPM_OPTIONS: Options = Options {
    directory: NPM_DIRECTORIES,
    path: &["--userconfig", "--globalconfig", "--init-module", "--cache"],
    instruction: &NPM_INSTRUCTIONS,
    ..OPTIONS
};

const NPM_DIRECTORIES: &[&str] = &["-C", "--dir", "--cwd", "--prefix"];

/// npm reads `_` in a name as `-`. Each names a program npm runs (a probe
/// ran `config edit` with `--editor=sh -c ...`).
const NPM_INSTRUCTIONS: [&str; 11] = [
    "-c",
    "--call",
    "--node-options",
    "--node_options",
    "--script-shell",
    "--script_shell",
    "--editor",
    "--shell",
    "--git",
    "--browser",
    "--viewer",
];

/// npm's, and pnpm's `--config.NAME`, which sets npm's config for the
/// scripts it runs (`--config.node-options`: review 35b).
const YARN_PNPM_INSTRUCTIONS: [&str; NPM_INSTRUCTIONS.len() + 1] = {
    let mut all = [""; NPM_INSTRUCTIONS.len() + 1];
    let mut at = 0;
    while at < NPM_INSTRUCTIONS.len() {
        all[at] = NPM_INSTRUCTIONS[at];
        at += 1;
    }
    all[at] = "--config.";
    all
};

/// [`NPM_OPTIONS`] with those that take a value which is neither a path
/// nor a program, so that the value is not read as the subcommand.
const NPM_OPTIONS_WITH_VALUES: Options = Options {
    values: NPM_VALUES,
    flags: NPM_FLAGS,
    ..NPM_OPTIONS
};

/// npm's options without a value that are written before its subcommand,
/// where one it does not know is refused.
const NPM_FLAGS: &[&str] = &[
    "-g",
    "--global",
    "-s",
    "--silent",
    "-q",
    "--quiet",
    "-d",
    "-dd",
    "-ddd",
    "--verbose",
    "-y",
    "--yes",
    "--no",
    "-f",
    "--force",
    "--json",
    "--dry-run",
    "--offline",
    "--prefer-offline",
    "--prefer-online",
    "--no-audit",
    "--no-fund",
    "--ignore-scripts",
    "--legacy-peer-deps",
    "-ws",
    "--workspaces",
    "--include-workspace-root",
    "--if-present",
    "--production",
    "-S",
    "--save",
    "-D",
    "--save-dev",
    "-O",
    "--save-optional",
    "-E",
    "--save-exact",
    "-P",
    "--save-prod",
    "--no-save",
    "-h",
    "--help",
    "-v",
    "--version",
    "-l",
    "--long",
    "-p",
    "--parseable",
    "--color",
    "--no-color",
    "--no-progress",
    "--progress",
];

/// yarn's and pnpm's options: npm's, with theirs.
const YARN_PNPM_OPTIONS: Options = Options {
    directory: NPM_DIRECTORIES,
    path: &[
        "--userconfig",
        "--globalconfig",
        "--store-dir",
        "--modules-dir",
        "--virtual-store-dir",
        "--modules-folder",
        "--cache-folder",
        "--global-folder",
    ],
    instruction: &YARN_PNPM_INSTRUCTIONS,
    values: &[
        "--loglevel",
        "--registry",
        "--reporter",
        "-F",
        "--filter",
        "--filter-prod",
        "--workspace-concurrency",
        "--resume-from",
        "--mutex",
        "--network-timeout",
        "--tag",
        "--access",
        "--otp",
    ],
    flags: &[
        "-r",
        "--recursive",
        "-w",
        "--workspace-root",
        "-s",
        "--silent",
        "--verbose",
        "-h",
        "--help",
        "-v",
        "--version",
        "--stream",
        "--parallel",
        "--aggregate-output",
        "--frozen-lockfile",
        "--no-frozen-lockfile",
        "--immutable",
        "--prefer-offline",
        "--offline",
        "--color",
        "--no-color",
        "--no-bail",
        "--sort",
        "--reverse",
        "--if-present",
        "--fail-if-no-match",
        "--ignore-scripts",
        "--non-interactive",
        "--no-progress",
        "--json",
        "--production",
        "--prod",
        "-D",
        "-P",
        "-O",
        "-E",
        "-T",
        "-W",
        "-g",
        "--global",
        "--dev",
        "--save-dev",
        "--peer",
        "--exact",
        "--optional",
        "--tilde",
        "--ignore-workspace-root-check",
    ],
    ..OPTIONS
};

const NPM_VALUES: &[&str] = &[
    "--loglevel",
    "--registry",
    "-w",
    "--workspace",
    "--omit",
    "--include",
    "--tag",
    "--access",
    "--otp",
    "--location",
    "--install-strategy",
    "--save-prefix",
    "--scope",
    "--auth-type",
    "--before",
];

/// npm's subcommands and their aliases (npm 11) that run nothing the
/// project does not name: `run`, `test` and the install family run its
/// package.json scripts, which the check has judged (the project must be
/// out of the sandbox's reach). Not `exec` and its kin, which run what
/// their arguments name.
const NPM_SUBCOMMANDS: &[&str] = &[
    "access",
    "add",
    "audit",
    "author",
    "bugs",
    "cache",
    "ci",
    "cit",
    "clean-install",
    "clean-install-test",
    "completion",
    "ddp",
    "dedupe",
    "deprecate",
    "diff",
    "dist-tag",
    "dist-tags",
    "docs",
    "doctor",
    "edit",
    "explain",
    "find",
    "find-dupes",
    "fund",
    "get",
    "help",
    "help-search",
    "hlep",
    "home",
    "i",
    "ic",
    "in",
    "info",
    "ins",
    "inst",
    "insta",
    "instal",
    "install",
    "install-ci-test",
    "install-clean",
    "install-test",
    "isnt",
    "isnta",
    "isntal",
    "isntall",
    "isntall-clean",
    "issues",
    "it",
    "la",
    "link",
    "list",
    "ll",
    "ln",
    "ls",
    "org",
    "ogr",
    "outdated",
    "owner",
    "pack",
    "ping",
    "prefix",
    "profile",
    "prune",
    "publish",
    "query",
    "r",
    "rb",
    "rebuild",
    "remove",
    "repo",
    "restart",
    "rm",
    "root",
    "rum",
    "run",
    "run-script",
    "s",
    "sbom",
    "se",
    "search",
    "show",
    "shrinkwrap",
    "star",
    "stars",
    "start",
    "stop",
    "t",
    "team",
    "test",
    "tst",
    "token",
    "udpate",
    "un",
    "undeprecate",
    "uninstall",
    "unlink",
    "unpublish",
    "unstar",
    "up",
    "update",
    "upgrade",
    "urn",
    "v",
    "verison",
    "version",
    "view",
    "whoami",
    "why",
];

impl InstructionReader {
    /// Its first operand is a subcommand: one of its lists names each it
    /// knows, and any other is refused.
    fn has_subcommands(&self) -> bool {
        !(self.subcommands.is_empty()
            && self.plain_subcommands.is_empty()
            && self.instruction_subcommands.is_empty())
    }
}

/// The configuration files git reads wherever it runs.
const GIT_CONFIG_FILES: &[&str] = &[
    "~/.gitconfig",
    "xdg:git/config",
    "xdg:git/attributes",
    "/etc/gitconfig",
    "@prefix/etc/gitconfig",
];

/// The options that make `git config` read rather than write.
const CONFIG_READ_MODES: &[&[u8]] = &[
    b"--get",
    b"--get-all",
    b"--get-regexp",
    b"--get-urlmatch",
    b"--get-color",
    b"--get-colorbool",
    b"-l",
    b"--list",
];

/// git's subcommands that neither take an instruction as an argument nor
/// name a repository to run in (what they read of the repository is
/// judged as the working directory's is). Any subcommand in neither list
/// (an alias, an internal command such as `submodule--helper`, a
/// `git-NAME` found in `PATH`) is refused: the check cannot know what it
/// runs.
const GIT_PLAIN_SUBCOMMANDS: &[&str] = &[
    "add",
    "am",
    "annotate",
    "blame",
    "branch",
    "cat-file",
    "check-attr",
    "check-ignore",
    "check-mailmap",
    "check-ref-format",
    "checkout",
    "cherry",
    "cherry-pick",
    "clean",
    "column",
    "commit",
    "commit-graph",
    "commit-tree",
    "count-objects",
    "describe",
    "diff",
    "diff-files",
    "diff-index",
    "diff-tree",
    "fast-export",
    "fmt-merge-msg",
    "for-each-ref",
    "fsck",
    "fsck-objects",
    "gc",
    "get-tar-commit-id",
    "hash-object",
    "help",
    "log",
    "ls-files",
    "ls-tree",
    "merge",
    "merge-base",
    "merge-tree",
    "mktag",
    "mktree",
    "multi-pack-index",
    "mv",
    "name-rev",
    "notes",
    "pack-refs",
    "patch-id",
    "prune",
    "prune-packed",
    "range-diff",
    "reflog",
    "request-pull",
    "refs",
    "repack",
    "replace",
    "replay",
    "rerere",
    "reset",
    "restore",
    "rev-list",
    "rev-parse",
    "revert",
    "rm",
    "shortlog",
    "show",
    "show-branch",
    "show-index",
    "show-ref",
    "sparse-checkout",
    "stage",
    "stash",
    "status",
    "stripspace",
    "switch",
    "symbolic-ref",
    "tag",
    "unpack-file",
    "unpack-objects",
    "update-index",
    "update-ref",
    "update-server-info",
    "var",
    "verify-commit",
    "verify-pack",
    "verify-tag",
    "version",
    "whatchanged",
    "write-tree",
];

/// rustup's subcommands that run a command or record a toolchain to run.
const RUSTUP_SUBCOMMANDS: &[Subcommand] = &[Subcommand {
    names: &["toolchain"],
    options: OPTIONS,
    instruction_operands: &["link"],
    ..SUBCOMMAND
}];

/// git's subcommands with options or operands that name a command to run
/// or a template whose hooks run.
const GIT_SUBCOMMANDS: &[Subcommand] = &[
    Subcommand {
        names: &["clone"],
        options: Options {
            // The repository git makes, where a planted one may be.
            path: &["--separate-git-dir"],
            instruction: &["-c", "--config", "--template", "-u", "--upload-pack"],
            ..OPTIONS
        },
        repository_operand: true,
        ..SUBCOMMAND
    },
    Subcommand {
        names: &["init", "init-db"],
        options: Options {
            path: &["--separate-git-dir"],
            instruction: &["--template"],
            ..OPTIONS
        },
        repository_operand: true,
        ..SUBCOMMAND
    },
    Subcommand {
        names: &["fetch", "pull", "ls-remote", "fetch-pack"],
        options: Options {
            instruction: &["--upload-pack", "--exec"],
            ..OPTIONS
        },
        repository_operand: true,
        ..SUBCOMMAND
    },
    Subcommand {
        names: &["push", "send-pack"],
        options: Options {
            path: &["--repo", "--remote"],
            instruction: &["--receive-pack", "--exec"],
            ..OPTIONS
        },
        repository_operand: true,
        ..SUBCOMMAND
    },
    Subcommand {
        names: &["archive"],
        options: Options {
            path: &["--remote"],
            instruction: &["--exec"],
            output: &["-o"],
            ..OPTIONS
        },
        repository_operand: true,
        ..SUBCOMMAND
    },
    Subcommand {
        // Where it writes: `-o` is its alone (push's is an option for the
        // server, commit's `--only`).
        names: &["format-patch"],
        options: Options {
            output: &["-o"],
            ..OPTIONS
        },
        ..SUBCOMMAND
    },
    Subcommand {
        // Their parser takes any cut of `--output-directory` (`--o`): no
        // other option of theirs starts so.
        names: &["bugreport", "diagnose"],
        options: Options {
            output: &["-o", "--output-directory"],
            ..OPTIONS
        },
        ..SUBCOMMAND
    },
    Subcommand {
        // The files it checks out go to `--prefix` followed by their path.
        names: &["checkout-index"],
        options: Options {
            output: &["--prefix"],
            ..OPTIONS
        },
        ..SUBCOMMAND
    },
    Subcommand {
        // What the commands above run in the repository they name
        // (`git-upload-pack /r`).
        names: &["upload-pack", "receive-pack", "upload-archive"],
        options: OPTIONS,
        repository_operand: true,
        ..SUBCOMMAND
    },
    Subcommand {
        names: &["rebase"],
        options: Options {
            instruction: &["-x", "--exec"],
            ..OPTIONS
        },
        ..SUBCOMMAND
    },
    Subcommand {
        names: &["grep"],
        options: Options {
            instruction: &["-O", "--open-files-in-pager"],
            ..OPTIONS
        },
        ..SUBCOMMAND
    },
    Subcommand {
        names: &["send-email"],
        options: Options {
            instruction: &[
                "--smtp-server",
                "--sendmail-cmd",
                "--to-cmd",
                "--cc-cmd",
                "--header-cmd",
            ],
            ..OPTIONS
        },
        ..SUBCOMMAND
    },
    Subcommand {
        names: &["filter-branch"],
        options: Options {
            instruction: &[
                "--env-filter",
                "--tree-filter",
                "--index-filter",
                "--parent-filter",
                "--msg-filter",
                "--commit-filter",
                "--tag-name-filter",
                // Evaluated once before the others.
                "--setup",
            ],
            // Its directory for the rewrite, made and removed.
            output: &["-d"],
            ..OPTIONS
        },
        ..SUBCOMMAND
    },
    Subcommand {
        // Where it writes: an option's value.
        names: &["mailsplit"],
        options: Options {
            output: &["-o"],
            ..OPTIONS
        },
        ..SUBCOMMAND
    },
    Subcommand {
        // Its index, and with an operand the pack's files beside it.
        names: &["index-pack"],
        options: Options {
            output: &["-o"],
            ..OPTIONS
        },
        operands_are_outputs: true,
        ..SUBCOMMAND
    },
    Subcommand {
        // Its parser takes any cut of `--index-output`, `--i` included:
        // it has no other option that starts so.
        names: &["read-tree"],
        options: Options {
            output: &["--index-output"],
            ..OPTIONS
        },
        ..SUBCOMMAND
    },
    Subcommand {
        // Rewrites its operands, wherever they are.
        names: &["interpret-trailers"],
        options: Options {
            output: &["--in-place"],
            ..OPTIONS
        },
        ..SUBCOMMAND
    },
    Subcommand {
        // Patches may then name files outside the work tree.
        names: &["apply"],
        options: Options {
            output: &["--unsafe-paths"],
            ..OPTIONS
        },
        ..SUBCOMMAND
    },
    Subcommand {
        names: &["bundle"],
        options: OPTIONS,
        output_operands: &["create"],
        ..SUBCOMMAND
    },
    Subcommand {
        names: &["worktree"],
        options: OPTIONS,
        output_operands: &["add", "move"],
        ..SUBCOMMAND
    },
    Subcommand {
        names: &["mailinfo", "merge-file", "pack-objects"],
        options: OPTIONS,
        operands_are_outputs: true,
        ..SUBCOMMAND
    },
    Subcommand {
        names: &["daemon"],
        options: Options {
            instruction: &["--access-hook"],
            ..OPTIONS
        },
        ..SUBCOMMAND
    },
    Subcommand {
        names: &["config"],
        options: Options {
            path: &["-f", "--file"],
            // Their values are never modes (`--comment --get` writes).
            values: &[
                "--comment",
                "--default",
                "--type",
                "--value",
                "--blob",
                "--url",
            ],
            // Each writes (or removes) a value.
            instruction: &[
                "--add",
                "--replace-all",
                "--unset",
                "--unset-all",
                "--rename-section",
                "--remove-section",
                "-e",
                "--edit",
            ],
            ..OPTIONS
        },
        instruction_operands: &["set", "unset", "rename-section", "remove-section", "edit"],
        writes_configuration: true,
        ..SUBCOMMAND
    },
    Subcommand {
        // A remote's address is where `push` and `fetch` then run.
        names: &["remote"],
        options: OPTIONS,
        instruction_operands: &["add", "set-url"],
        ..SUBCOMMAND
    },
    Subcommand {
        names: &["submodule"],
        options: OPTIONS,
        instruction_operands: &["foreach", "add", "set-url"],
        ..SUBCOMMAND
    },
    Subcommand {
        names: &["bisect"],
        options: OPTIONS,
        instruction_operands: &["run"],
        ..SUBCOMMAND
    },
];

/// Shells' options (bash, dash, ksh, zsh share these).
const SHELL_OPTIONS: Options = Options {
    path: &["--rcfile", "--init-file"],
    inline: &["-c"],
    values: &["-o", "-O"],
    flags: &[
        "-a", "-b", "-d", "-e", "-f", "-g", "-h", "-i", "-k", "-l", "-m", "-n", "-p", "-r", "-s",
        "-t", "-u", "-v", "-x", "-B", "-C", "-D", "-E", "-H", "-N", "-P", "-T",
    ],
    ..OPTIONS
};

/// The table: what each program reads instructions from.
const READERS: &[InstructionReader] = &[
    InstructionReader {
        names: &["git"],
        prefixes: &["git-"],
        reads: "its repository (config, hooks, attributes, submodules)",
        // `git push '~/ws'`: receive-pack ran ~/ws's hooks (a review).
        expands_home: true,
        searches_upwards: true,
        // git's global options (git.c): the ones that take a separate
        // value are all listed; any other is refused.
        options: Options {
            directory: &["-C"],
            path: &[
                "--git-dir",
                "--work-tree",
                "--super-prefix",
                "--shallow-file",
            ],
            instruction: &["-c", "--config-env", "--exec-path"],
            values: &["--namespace", "--attr-source", "--list-cmds"],
            flags: &[
                "-p",
                "--paginate",
                "-P",
                "--no-pager",
                "--no-replace-objects",
                "--bare",
                "--literal-pathspecs",
                "--no-literal-pathspecs",
                "--glob-pathspecs",
                "--noglob-pathspecs",
                "--icase-pathspecs",
                "--no-optional-locks",
                "--no-advice",
                "--no-lazy-fetch",
                "-v",
                "--version",
                "-h",
                "--help",
                "--html-path",
                "--man-path",
                "--info-path",
            ],
            ..OPTIONS
        },
        options_end_at_operand: true,
        refuses_unknown_options: true,
        subcommands: GIT_SUBCOMMANDS,
        // Its input stream says which files it writes (`option git
        // export-pack-edges=FILE`, `feature export-marks=FILE`). The
        // tools run a diff or merge program of their choosing, `vimdiff`
        // when none is configured, which takes its keys from the sandbox
        // (probe 165: vim's `:!` ran outside it).
        instruction_subcommands: &["fast-import", "difftool", "mergetool"],
        subcommand_options: Options {
            output: &[
                "--output",
                "--output-directory",
                "--export-marks",
                "--export-pack-edges",
                "--index-output",
                // repack's; its `--filter` is an option of its own.
                "--filter-to",
            ],
            ..OPTIONS
        },
        plain_subcommands: GIT_PLAIN_SUBCOMMANDS,
        config_files: GIT_CONFIG_FILES,
        config_includes: true,
        ..READER
    },
    InstructionReader {
        names: &["make", "gmake", "remake"],
        reads: "its makefiles",
        expands_home: true,
        searches_upwards: true,
        assignments_instruct: true,
        options: Options {
            directory: &["-C", "--directory"],
            path: &["-f", "--file", "--makefile", "-I", "--include-dir"],
            instruction: &["--eval", "-E"],
            attached: &["-j", "-l", "-O"],
            words: &["-W", "-o"],
            flags: &[
                "-b", "-B", "-d", "-e", "-i", "-k", "-L", "-m", "-n", "-p", "-q", "-r", "-R", "-s",
                "-S", "-t", "-v", "-w",
            ],
            ..OPTIONS
        },
        ..READER
    },
    InstructionReader {
        // npm runs a subcommand it resolves from any unique prefix (`npm
        // exe` is `npm exec`, `npm cr` `npm init`): only the names listed
        // are let through, exactly, and an option it does not know is
        // refused before the subcommand, whose value it could be (`npm -m
        // test exec`: review 35). Probe 165: `npm exec -- bash` ran the
        // host's bash on the sandbox's input. The names are the script's
        // (`npm-cli.js`) and corepack's shim's (`npm.js`).
        names: &["npm", "npm-cli.js", "npm.js"],
        plain_subcommands: NPM_SUBCOMMANDS,
        // Each runs what it names, or writes what a later npm runs
        // (`config set editor`, `pkg set scripts.x`: review 35; `login
        // --scope=@x --registry=URL` writes where `@x` comes from).
        instruction_subcommands: &[
            "exec", "x", "explore", "init", "create", "innit", "config", "c", "set", "pkg",
            "login", "logout", "adduser", "add-user",
        ],
        refuses_unknown_options: true,
        options: NPM_OPTIONS_WITH_VALUES,
        options_anywhere: true,
        ..NPM_READER
    },
    InstructionReader {
        // Each runs the program its first operand names (npm's `exec`).
        names: &["npx", "npx-cli.js", "npx.js", "pnpx", "pnpx.js", "pnpx.cjs"],
        runs_its_operand: true,
        options: NPM_OPTIONS_WITH_VALUES,
        ..NPM_READER
    },
    InstructionReader {
        // A first word yarn does not know is a script or a dependency's
        // program (the project's), yet only the names listed pass.
        names: &["yarn", "yarnpkg", "yarn.js", "yarnpkg.js"],
        plain_subcommands: &[
            "add",
            "audit",
            "autoclean",
            "bin",
            "cache",
            "check",
            "global",
            "import",
            "info",
            "install",
            "licenses",
            "link",
            "list",
            "login",
            "logout",
            "outdated",
            "owner",
            "pack",
            "publish",
            "remove",
            "run",
            "tag",
            "team",
            "test",
            "unlink",
            "unplug",
            "up",
            "upgrade",
            "upgrade-interactive",
            "version",
            "versions",
            "why",
            "workspace",
            "workspaces",
        ],
        instruction_subcommands: &["exec", "dlx", "node", "create", "config", "set", "plugin"],
        // `workspace NAME COMMAND` runs a command of yarn's in another
        // package: its runners are refused there too.
        instructions_anywhere: true,
        // As npm's (review 35b: `--modules-folder test sh`).
        refuses_unknown_options: true,
        options: YARN_PNPM_OPTIONS,
        options_anywhere: true,
        ..NPM_READER
    },
    InstructionReader {
        // pnpm runs a first word that is neither its own nor a script as
        // a shell command (review 35: `pnpm bash`): only the names listed
        // pass.
        names: &["pnpm", "pnpm.cjs", "pnpm.js"],
        plain_subcommands: &[
            "add",
            "audit",
            "bin",
            "dedupe",
            "fetch",
            "i",
            "import",
            "install",
            "install-test",
            "it",
            "licenses",
            "link",
            "list",
            "ll",
            "ln",
            "ls",
            "outdated",
            "pack",
            "prune",
            "publish",
            "rb",
            "rebuild",
            "remove",
            "rm",
            "root",
            "run",
            "run-script",
            "start",
            "store",
            "t",
            "test",
            "un",
            "uninstall",
            "unlink",
            "up",
            "update",
            "upgrade",
            "why",
        ],
        instruction_subcommands: &[
            "exec",
            "dlx",
            "create",
            "x",
            "env",
            "setup",
            "config",
            "set",
            "patch",
            "patch-commit",
            "recursive",
            "multi",
            "m",
        ],
        // As npm's (review 35b: `--filter test bash` ran bash).
        refuses_unknown_options: true,
        options: YARN_PNPM_OPTIONS,
        options_anywhere: true,
        ..NPM_READER
    },
    InstructionReader {
        // It runs the package manager its first operand names, with the
        // rest as that one's arguments.
        names: &["corepack", "corepack.js"],
        plain_subcommands: &[
            "enable", "disable", "install", "use", "up", "pack", "prepare", "hydrate", "cache",
        ],
        instruction_subcommands: &["npm", "npx", "yarn", "yarnpkg", "pnpm", "pnpx"],
        ..NPM_READER
    },
    InstructionReader {
        // Escalated, rustup runs as itself (an escalation's `argv[0]` is
        // its canonical path), never as the `cargo` it stands for:
        // `rustup run` and `toolchain link` say what it runs.
        names: &["rustup"],
        reads: "rust-toolchain files and its settings",
        searches_upwards: true,
        subcommands: RUSTUP_SUBCOMMANDS,
        instruction_subcommands: &["run"],
        plain_subcommands: &[
            "show",
            "update",
            "check",
            "default",
            "target",
            "component",
            "override",
            "self",
            "set",
            "completions",
            "doc",
            "man",
            "which",
            "help",
            "install",
            "uninstall",
            "up",
        ],
        config_files: &["~/.rustup/settings.toml", "$RUSTUP_HOME/settings.toml"],
        ..READER
    },
    InstructionReader {
        names: &["cargo"],
        prefixes: &["cargo-"],
        reads: "Cargo.toml, build scripts, .cargo/config.toml and rust-toolchain files",
        searches_upwards: true,
        options: Options {
            directory: &["-C"],
            path: &["--manifest-path", "--lockfile-path", "--path"],
            instruction: &["--config", "-Z"],
            ..OPTIONS
        },
        config_files: &[
            "~/.cargo/config.toml",
            "~/.cargo/config",
            "$CARGO_HOME/config.toml",
            "$CARGO_HOME/config",
            "~/.rustup/settings.toml",
            "$RUSTUP_HOME/settings.toml",
        ],
        ..READER
    },
    InstructionReader {
        names: &["mvn", "mvnDebug", "mvnw", "gradle", "gradlew", "ant", "sbt"],
        reads: "its build files (pom.xml, .mvn/jvm.config, build.gradle, build.xml)",
        searches_upwards: true,
        options: Options {
            directory: &["-p", "--project-dir"],
            path: &[
                "-f",
                "--file",
                "-s",
                "--settings",
                "-gs",
                "--global-settings",
                "-t",
                "--toolchains",
                "-b",
                "--build-file",
                "-c",
                "--settings-file",
                "-I",
                "--init-script",
                "-g",
                "--gradle-user-home",
                "-buildfile",
            ],
            ..OPTIONS
        },
        config_files: &[
            "~/.mavenrc",
            "/etc/mavenrc",
            "/usr/local/etc/mavenrc",
            "~/.m2",
            "~/.gradle",
            "~/.ant",
            "~/.sbt",
        ],
        ..READER
    },
    InstructionReader {
        // Build tools and task runners that read the project they find in
        // (or above) their working directory, and run what it says.
        names: &[
            "go",
            "cmake",
            "ninja",
            "meson",
            "scons",
            "just",
            "rake",
            "bundle",
            "bundler",
            "composer",
            "poetry",
            "uv",
            "pipenv",
            "tox",
            "nox",
            "pre-commit",
            "deno",
            "bun",
            // Scripts that run what their working directory holds
            // (`configure.ac`'s `m4_esyscmd`, a `.proverc`'s `--exec`, a
            // Makefile; probe 122).
            "autoconf",
            "autoreconf",
            "autoheader",
            "autom4te",
            "automake",
            "aclocal",
            "libtoolize",
            "prove",
            "make-first-existing-target",
        ],
        reads: "the project files it finds from its working directory",
        operands_name_projects: true,
        searches_upwards: true,
        options: Options {
            directory: &["-C", "--directory", "--project", "--cwd"],
            path: &["-f", "--file", "--justfile", "--config", "-c", "--rakefile"],
            ..OPTIONS
        },
        ..READER
    },
    InstructionReader {
        // The JDK's tools: without `-cp`, the class path is the working
        // directory, where javac also finds annotation processors
        // (`META-INF/services`) and runs them (probe 122).
        names: &["java", "javac", "jshell", "javadoc"],
        reads: "classes and annotation processors on its class path (its working directory)",
        searches_upwards: true,
        argument_files: true,
        ..READER
    },
    InstructionReader {
        // git's front end for large repositories: it runs git (fetch,
        // maintenance) in its working directory's repository and in every
        // enlistment `~/.gitconfig` lists, wherever it runs itself; only
        // what runs nothing is let out (probe 122: `scalar run all` ran a
        // planted `uploadpack`).
        names: &["scalar"],
        reads: "the repositories it maintains (it runs git in each)",
        searches_upwards: true,
        refuses_unknown_options: true,
        options: Options {
            directory: &["-C"],
            instruction: &["-c"],
            ..OPTIONS
        },
        instruction_subcommands: &[
            "run",
            "register",
            "unregister",
            "reconfigure",
            "clone",
            "diagnose",
            "delete",
            "cache-server",
        ],
        plain_subcommands: &["list", "help", "version"],
        // It runs git, which reads them (`scalar help` runs the man viewer
        // they name; review 123).
        config_files: GIT_CONFIG_FILES,
        config_includes: true,
        ..READER
    },
    InstructionReader {
        // Infrastructure tools: the configuration in their working
        // directory runs commands (a `local-exec` provisioner), and the
        // providers in its `.terraform/` are programs they start.
        names: &["terraform", "tofu", "terragrunt"],
        reads: "the configuration and providers in its working directory",
        operands_name_projects: true,
        searches_upwards: true,
        config_files: &["~/.terraformrc", "~/.terraform.d", "~/.tofurc"],
        ..READER
    },
    InstructionReader {
        names: &["pip", "pip3"],
        prefixes: &["pip3."],
        reads: "the packages it builds (setup.py, pyproject.toml) and pip.conf",
        expands_home: true,
        operands_name_projects: true,
        searches_upwards: true,
        options: Options {
            path: &[
                "-r",
                "--requirement",
                "-c",
                "--constraint",
                "-e",
                "--editable",
                "-f",
                "--find-links",
                "--src",
            ],
            flags: &["-q", "-v", "-U", "-I", "-y", "-V", "-h"],
            ..OPTIONS
        },
        config_files: &[
            "xdg:pip/pip.conf",
            "~/.pip/pip.conf",
            "/etc/pip.conf",
            "/etc/xdg/pip/pip.conf",
            "~/.pyenv/version",
            "$PYENV_ROOT/version",
        ],
        ..READER
    },
    InstructionReader {
        names: &["python", "python2", "python3"],
        prefixes: &["python3.", "python2."],
        reads: "its script and modules (sys.path starts in the working directory)",
        operands_name_projects: true,
        searches_upwards: true,
        options: Options {
            inline: &["-c"],
            hand_over: &["-m"],
            values: &["-W", "--check-hash-based-pycs"],
            // Its value may name a directory (`pycache_prefix=`).
            words: &["-X"],
            flags: &[
                "-b", "-B", "-d", "-E", "-h", "-i", "-I", "-O", "-P", "-q", "-s", "-S", "-u", "-v",
                "-V", "-x", "-R",
            ],
            ..OPTIONS
        },
        options_end_at_operand: true,
        config_files: &["~/.local/lib", "~/.pyenv/version", "$PYENV_ROOT/version"],
        ..READER
    },
    InstructionReader {
        names: &["node", "nodejs"],
        reads: "its script and the modules it requires (node_modules up the tree)",
        operands_name_projects: true,
        searches_upwards: true,
        options: Options {
            path: &[
                "-r",
                "--require",
                "--import",
                "--loader",
                "--experimental-loader",
            ],
            inline: &["-e", "--eval", "-p", "--print"],
            // A debugger's port: whoever connects runs code in it.
            instruction: &[
                "--inspect",
                "--inspect-brk",
                "--inspect-wait",
                "--inspect-port",
                "--debug-port",
            ],
            ..OPTIONS
        },
        options_end_at_operand: true,
        // Node's global folders, searched after every node_modules.
        config_files: &["~/.node_modules", "~/.node_libraries"],
        ..READER
    },
    InstructionReader {
        names: &["perl"],
        reads: "its script",
        // Letters with an attached value (`-i.bak`, `-MModule`, `-x/dir`)
        // are not flags: the rest of the word is judged.
        options: Options {
            path: &["-I"],
            inline: &["-e", "-E"],
            // A module (`-MData::Dumper`, `-Mlib=/w`), the debugger's, a
            // directory to enter, a split pattern, an in-place suffix: only
            // ever attached (a review's `perl -i -I/w/lib` loaded /w/lib).
            attached: &["-M", "-m", "-d", "-D", "-x", "-C", "-F", "-i"],
            digits: &["-l", "-0"],
            flags: &[
                "-a", "-c", "-g", "-n", "-p", "-s", "-S", "-t", "-T", "-u", "-U", "-v", "-w", "-W",
                "-X",
            ],
            ..OPTIONS
        },
        options_end_at_operand: true,
        ..READER
    },
    InstructionReader {
        names: &["ruby"],
        reads: "its script and the libraries it requires",
        options: Options {
            directory: &["-C"],
            path: &["-I", "-r"],
            inline: &["-e"],
            values: &["-E", "--encoding"],
            attached: &["-W", "-T", "-x", "-K", "-F", "-i"],
            digits: &["-0"],
            flags: &[
                "-a", "-c", "-d", "-h", "-l", "-n", "-p", "-s", "-S", "-v", "-w", "-y",
            ],
            ..OPTIONS
        },
        options_end_at_operand: true,
        ..READER
    },
    InstructionReader {
        names: &["sh", "bash", "dash", "ksh", "mksh"],
        reads: "its script",
        options: SHELL_OPTIONS,
        options_end_at_operand: true,
        plus_options: true,
        ..READER
    },
    InstructionReader {
        names: &["zsh"],
        reads: "its script and ~/.zshenv",
        options: SHELL_OPTIONS,
        options_end_at_operand: true,
        plus_options: true,
        config_files: &["~/.zshenv", "/etc/zsh/zshenv", "/etc/zshenv"],
        ..READER
    },
];

/// The program's entry in the table, by its canonical path's basename.
fn reader_of(program: &Path) -> Option<&'static InstructionReader> {
    let name = program.file_name()?.to_str()?;
    READERS.iter().find(|reader| {
        reader
            .names
            .iter()
            .any(|known| name == *known || is_versioned(name, known))
            || reader
                .prefixes
                .iter()
                .any(|prefix| name.starts_with(prefix) && name.len() > prefix.len())
    })
}

/// Whether `name` is `known` with a version after it (`perl5.36.0`, a hard
/// link to perl; `ruby3.1`, Debian's ruby by its canonical path;
/// `bash-5.2`): the same interpreter, reading instructions the same way.
fn is_versioned(name: &str, known: &str) -> bool {
    let Some(version) = name.strip_prefix(known) else {
        return false;
    };
    let version = version.strip_prefix(['.', '-']).unwrap_or(version);
    version.starts_with(|c: char| c.is_ascii_digit())
        && version.chars().all(|c| c.is_ascii_digit() || c == '.')
        && !version.ends_with('.')
}

/// Whether the table has an entry for `program` (canonical).
pub(crate) fn in_table(program: &Path) -> bool {
    reader_of(program).is_some()
}

/// What the check needs to know about one request.
pub(crate) struct Request<'a> {
    /// The canonical path of the executable.
    pub(crate) program: &'a Path,
    pub(crate) argv: &'a [OsString],
    /// The canonical path of the directory it runs in.
    pub(crate) cwd: &'a Path,
    /// The requester's environment (`NAME=value`).
    pub(crate) env: &'a [OsString],
    /// What the sandbox or a grant may write, as roots (canonical).
    pub(crate) writable_roots: &'a [PathBuf],
}

/// Why escalating `request` would run instructions the sandbox could have
/// planted, or `None` when it would not (or the program is not in the
/// table). `writable` says whether the sandbox could create or change a
/// path (already resolved).
pub(crate) fn planted_instructions(
    request: &Request<'_>,
    writable: &dyn Fn(&Path) -> bool,
) -> Option<String> {
    let (reader, name) = entry_of(request.program)?;
    let args = request.argv.get(1..).unwrap_or_default();
    reader_refusal(reader, &name, request, args, writable)
}

/// The program's entry in the table, and the name refusals call it by.
fn entry_of(program: &Path) -> Option<(&'static InstructionReader, String)> {
    let reader = reader_of(program)?;
    let name = program
        .file_name()
        .map_or_else(String::new, |name| name.to_string_lossy().into_owned());
    Some((reader, name))
}

/// [`planted_instructions`] for one table entry, `args` being what follows
/// its name (a module run by `python -m` is judged by its own entry).
fn reader_refusal(
    reader: &'static InstructionReader,
    name: &str,
    request: &Request<'_>,
    args: &[OsString],
    writable: &dyn Fn(&Path) -> bool,
) -> Option<String> {
    let refused = |place: &Path, how: &str| Some(reads_refusal(reader, name, place, how));
    let scanned = Scanned::default();
    if reader.searches_upwards {
        if let Some(place) = writable_place(request.cwd, request.cwd, writable) {
            return refused(&place, "");
        }
        if let Some(refusal) =
            project_refusal(request.cwd, name, reader, request, writable, &scanned)
        {
            return Some(refusal);
        }
    }
    let walk = ArgumentWalk {
        reader,
        name,
        request,
        args,
        writable,
        refused: &refused,
        scanned: &scanned,
    };
    if let Some(reason) = walk.refusal() {
        return Some(reason);
    }
    if reader.config_includes {
        if let Some(refusal) = repository_refusal(name, request.cwd, request, writable, &scanned) {
            return Some(refusal);
        }
    }
    configuration_refusal(reader, name, request, writable)
}

/// An argument as a refusal names it: as it is when it is one plain word,
/// else quoted, with what is not printable escaped; its start only, when
/// long.
fn shown(word: &[u8]) -> String {
    const MOST: usize = 80;
    if word.len() > MOST {
        return format!("{}... ({} bytes)", shown(&word[..MOST]), word.len());
    }
    let plain = !word.is_empty()
        && word
            .iter()
            .all(|&byte| byte.is_ascii_graphic() && byte != b'"' && byte != b'\\');
    match plain {
        true => String::from_utf8_lossy(word).into_owned(),
        false => format!("{:?}", String::from_utf8_lossy(word)),
    }
}

/// The refusal of a program that reads what it runs from `place`, which
/// the sandbox can write (`how`: the file it stands for, if another).
fn reads_refusal(reader: &InstructionReader, name: &str, place: &Path, how: &str) -> String {
    format!(
        "escalation refused: {name} reads {} from {}{how}, which the sandbox can write",
        reader.reads,
        place.display()
    )
}

/// Why a program in the table, started on a script it reads and nothing
/// else, would still read instructions the sandbox could have planted: its
/// per-user and system configuration (a shell's `~/.zshenv`), whatever
/// directory it runs in.
pub(crate) fn planted_configuration(
    request: &Request<'_>,
    writable: &dyn Fn(&Path) -> bool,
) -> Option<String> {
    let (reader, name) = entry_of(request.program)?;
    configuration_refusal(reader, &name, request, writable)
}

/// The configuration files of `reader`'s entry, judged.
fn configuration_refusal(
    reader: &'static InstructionReader,
    name: &str,
    request: &Request<'_>,
    writable: &dyn Fn(&Path) -> bool,
) -> Option<String> {
    let refused = |place: &Path, how: &str| Some(reads_refusal(reader, name, place, how));
    for file in reader.config_files {
        for candidate in config_candidates(file, request) {
            if candidate.is_relative() {
                return Some(format!(
                    "escalation refused: {name} reads {} from {}, a relative path: from \
                     wherever it runs, which the sandbox may choose",
                    reader.reads,
                    candidate.display()
                ));
            }
            if let Some(place) = writable_place(&candidate, request.cwd, writable) {
                return refused(&place, &format!(" (for {})", candidate.display()));
            }
            // Read only once it is known the sandbox could not have
            // written it (nor chosen what it names, then).
            if reader.config_includes {
                if let Some(refusal) = named_refusal(name, &candidate, request, writable) {
                    return Some(refusal);
                }
            }
        }
    }
    None
}

/// Why a configuration file, which the sandbox cannot write, names a file
/// it could have (through `[include]`, or a value's path: see
/// [`config_includes`]).
fn named_refusal(
    name: &str,
    config: &Path,
    request: &Request<'_>,
    writable: &dyn Fn(&Path) -> bool,
) -> Option<String> {
    let named = match config_includes(config, request) {
        Ok(named) => named,
        Err(Unjudged { file, why }) => {
            return Some(format!(
                "escalation refused: {name} reads configuration that {} includes or names, \
                 which the check cannot judge: {why}",
                file.display()
            ))
        }
    };
    named.into_iter().find_map(|(file, from)| {
        let place = writable_place(&file, request.cwd, writable)?;
        Some(format!(
            "escalation refused: {name} reads {} (which {} names), and the sandbox can write {}",
            file.display(),
            from.display(),
            place.display()
        ))
    })
}

/// Why git, working from `start`, would read a repository the sandbox
/// could have written: each git directory it finds from there (see
/// [`git_directories`]) with the way to it, a writable root inside it,
/// the links among its entries and those of its `hooks` and `info`
/// ([`linked_out`]; not those of `worktrees`), and what its configuration
/// includes or names; the same for each submodule's git directory in its
/// `modules` ([`module_directories`]). Each git directory is judged once
/// a request.
fn repository_refusal(
    name: &str,
    start: &Path,
    request: &Request<'_>,
    writable: &dyn Fn(&Path) -> bool,
    scanned: &Scanned,
) -> Option<String> {
    let mut gitdirs = git_directories(start);
    let mut modules = Vec::new();
    for gitdir in &gitdirs {
        match module_directories(gitdir) {
            Ok(found) => modules.extend(found),
            Err(why) => {
                return Some(format!(
                    "escalation refused: {name} reads the submodules of {}, which the check \
                     cannot all judge: {why}",
                    gitdir.display()
                ))
            }
        }
    }
    gitdirs.extend(modules);
    for gitdir in gitdirs {
        if !scanned.judged_gitdirs.borrow_mut().insert(gitdir.clone()) {
            continue;
        }
        if let Some(place) = writable_place(&gitdir, start, writable) {
            return Some(format!(
                "escalation refused: {name} reads its repository from {} (through {}), which \
                 the sandbox can write",
                gitdir.display(),
                place.display()
            ));
        }
        // A hooks directory (or any other) inside it that the sandbox may
        // write, as a separate git directory's may be.
        let canonical = std::fs::canonicalize(&gitdir).unwrap_or_else(|_| gitdir.clone());
        if let Some(root) = request
            .writable_roots
            .iter()
            .find(|root| root.starts_with(&canonical))
        {
            return Some(format!(
                "escalation refused: {name} reads its repository {}, inside which the sandbox \
                 can write {}",
                gitdir.display(),
                root.display()
            ));
        }
        // Before its configuration is read: a link there may lead to a
        // file the sandbox writes (and may rewrite after the check).
        let linked = ["", "hooks", "info", "modules"].map(|entry| gitdir.join(entry));
        let found = linked_out(
            linked.iter().map(PathBuf::as_path),
            writable,
            request.writable_roots,
            scanned,
        );
        if let Some(found) = found {
            return Some(found.refusal(name, "its repository"));
        }
        for config in [gitdir.join("config"), gitdir.join("config.worktree")] {
            if let Some(refusal) = named_refusal(name, &config, request, writable) {
                return Some(refusal);
            }
        }
    }
    None
}

/// The git directories git uses from `start`, found as git finds them:
/// walking up, in each directory first its `.git` (the directory, or where
/// a `.git` file's `gitdir:` points, with a worktree's common directory),
/// then the directory itself if it is a bare repository (`--git-dir`, or
/// a directory inside a bare repository). `start` may itself be a gitfile
/// (`--git-dir=FILE`).
fn git_directories(start: &Path) -> Vec<PathBuf> {
    let is_git_directory = |dir: &Path| {
        dir.join("HEAD").is_file() && dir.join("objects").is_dir() && dir.join("refs").is_dir()
    };
    let gitfile = |file: &Path, from: &Path| -> Option<Vec<PathBuf>> {
        let text = read_small_file(file, 4096)?;
        let text = String::from_utf8_lossy(&text);
        let pointed = text.trim().strip_prefix("gitdir:")?;
        let gitdir = from.join(pointed.trim());
        let mut found = vec![gitdir.clone()];
        if let Some(common) = read_small_file(&gitdir.join("commondir"), 4096) {
            let common = String::from_utf8_lossy(&common);
            found.push(gitdir.join(common.trim()));
        }
        Some(found)
    };
    // A git directory's `commondir`, which git honours in any git
    // directory, not only a worktree's.
    let with_common = |gitdir: PathBuf| -> Vec<PathBuf> {
        let common = read_small_file(&gitdir.join("commondir"), 4096)
            .map(|common| gitdir.join(String::from_utf8_lossy(&common).trim()));
        std::iter::once(gitdir).chain(common).collect()
    };
    if start.is_file() {
        let from = start.parent().unwrap_or(Path::new("/"));
        return gitfile(start, from).unwrap_or_else(|| vec![start.to_path_buf()]);
    }
    for directory in start.ancestors() {
        let dot_git = directory.join(".git");
        if let Ok(meta) = std::fs::metadata(&dot_git) {
            if meta.is_dir() {
                return with_common(dot_git);
            }
            // Not a gitfile git reads: the file itself is judged.
            return gitfile(&dot_git, directory).unwrap_or_else(|| vec![dot_git]);
        }
        if is_git_directory(directory) {
            return with_common(directory.to_path_buf());
        }
    }
    Vec::new()
}

/// The git directories of a repository's submodules, in its `modules`
/// (`modules/NAME`, a name possibly with `/`, and theirs in turn): git
/// reads each one's configuration and runs its hooks when it recurses
/// into submodules. At most [`MOST_MODULES`] directories looked at, four
/// levels deep: more is an error, not a part judged.
fn module_directories(gitdir: &Path) -> Result<Vec<PathBuf>, String> {
    const MOST_MODULES: usize = 1024;
    let is_git_directory = |dir: &Path| dir.join("HEAD").is_file() && dir.join("objects").is_dir();
    let mut found = Vec::new();
    let mut looked_at = 0;
    let mut pending = vec![(gitdir.join("modules"), 0)];
    while let Some((directory, depth)) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&directory) else {
            continue;
        };
        for entry in entries.flatten() {
            looked_at += 1;
            if looked_at > MOST_MODULES {
                return Err(format!("more than {MOST_MODULES} directories in modules"));
            }
            let path = entry.path();
            // Not through links: a submodule's directory git made is one.
            if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                continue;
            }
            if is_git_directory(&path) {
                pending.push((path.join("modules"), 0));
                found.push(path);
            } else if depth < 4 {
                pending.push((path, depth + 1));
            }
        }
    }
    Ok(found)
}

/// Why what a configuration file includes or names was not judged, and
/// the file where the check stopped.
struct Unjudged {
    file: PathBuf,
    why: String,
}

/// The files `config` includes (`[include]` and `[includeIf "..."]`
/// `path = ...` lines), and those they include in turn, and every file
/// their values name by an absolute path or one git interpolates (a hooks
/// directory, an fsmonitor or ssh command), each with the file that names
/// it. A path is taken as git takes it ([`GitPaths`]): `~/` from each
/// home, `~user/` from the password database, `%(prefix)/` from each
/// prefix git may have; an include's relative path from the including
/// file's directory. Every `includeIf` is followed whatever its
/// condition: the check does not judge conditions. More than 256 files,
/// or 64 users, are not judged: `Err` names the file that went past.
fn config_includes(
    config: &Path,
    request: &Request<'_>,
) -> Result<Vec<(PathBuf, PathBuf)>, Unjudged> {
    /// Paths listed at most, and bytes read of each file: a configuration
    /// is small.
    const MOST_FILES: usize = 256;
    const MOST_BYTES: u64 = 1 << 20;
    let mut git_paths = GitPaths {
        homes: config_candidates("~/", request),
        prefixes: runtime_prefixes(request.program),
        users: Vec::new(),
    };
    let too_many = |file: PathBuf| Unjudged {
        file,
        why: format!("more than {MOST_FILES} files"),
    };
    let mut found: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut pending = vec![config.to_path_buf()];
    while let Some(file) = pending.pop() {
        let Some(text) = read_small_file(&file, MOST_BYTES) else {
            continue;
        };
        let directory = file.parent().unwrap_or(Path::new("/"));
        let (mut in_include, mut in_safe) = (false, false);
        let text = String::from_utf8_lossy(&text);
        for line in logical_lines(&text) {
            let mut line = line.trim();
            if line.starts_with(['#', ';']) {
                continue;
            }
            if let Some(section) = line.strip_prefix('[') {
                let name: String = section
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .collect();
                in_include =
                    name.eq_ignore_ascii_case("include") || name.eq_ignore_ascii_case("includeif");
                in_safe = name.eq_ignore_ascii_case("safe");
                // A key may follow on the same line: `[include] path = x`;
                // the header ends at the first `]` outside quotes.
                match unquoted_position(section, |c| c == ']') {
                    Some(end) if !section[end + 1..].trim().is_empty() => {
                        line = section[end + 1..].trim();
                    }
                    _ => continue,
                }
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            // `safe.directory` lists repositories git may open, often a
            // workspace: it names what to trust, nothing to read.
            if in_safe {
                continue;
            }
            if !in_include || !key.trim().eq_ignore_ascii_case("path") {
                // Any other value that names a file by an absolute path
                // (`core.hooksPath`, `core.fsmonitor`, `core.sshCommand`,
                // a helper's command line): judged, not followed. Its
                // words, their `=` values (`--lesskey-src=/w/k`), and a
                // shell alias's command (`!/w/x.sh`).
                let words =
                    value.split(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '=' | '!'));
                for word in words {
                    let named = match git_paths.interpolated(word) {
                        Ok(named) => named.unwrap_or_default(),
                        Err(why) => return Err(Unjudged { file, why }),
                    };
                    for path in named {
                        if found.iter().any(|(seen, _)| *seen == path) {
                            continue;
                        }
                        if found.len() >= MOST_FILES {
                            return Err(too_many(file));
                        }
                        found.push((path, file.clone()));
                    }
                }
                continue;
            }
            // An include's path is followed, so its comment is cut off
            // (other values are judged whole: a comment cut wrongly there
            // would hide a path).
            let value = &value
                [..unquoted_position(value, |c| matches!(c, '#' | ';')).unwrap_or(value.len())];
            let value = value.trim().trim_matches('"');
            let paths = match git_paths.interpolated(value) {
                Ok(Some(paths)) => paths,
                Ok(None) => vec![directory.join(value.strip_prefix(OPTIONAL).unwrap_or(value))],
                Err(why) => return Err(Unjudged { file, why }),
            };
            for path in paths {
                if found.len() >= MOST_FILES {
                    return Err(too_many(file));
                }
                if !found.iter().any(|(seen, _)| *seen == path) {
                    pending.push(path.clone());
                    found.push((path, file.clone()));
                }
            }
        }
    }
    Ok(found)
}

/// What marks a path value as one git skips when it is missing (git
/// 2.52): the path follows.
const OPTIONAL: &str = ":(optional)";

/// How git interpolates a path value (`interpolate_path`), for the homes
/// and prefixes it may have.
struct GitPaths {
    homes: Vec<PathBuf>,
    prefixes: Vec<PathBuf>,
    /// Users looked up so far, with their home if the password database
    /// knows them.
    users: Vec<(String, Option<PathBuf>)>,
}

impl GitPaths {
    /// Users looked up at most: each is a query of the password database,
    /// which may be a network service.
    const MOST_USERS: usize = 64;

    /// Where git takes `value` to be: `~` and `~/` from each home, `~user`
    /// and `~user/` from the user's home in the password database (none
    /// for a user it does not know: git fails then), `%(prefix)/` from
    /// each prefix, an absolute path as it is; `None` for a relative one.
    /// `Err` when the database cannot answer, or for too many users.
    fn interpolated(&mut self, value: &str) -> Result<Option<Vec<PathBuf>>, String> {
        let value = value.strip_prefix(OPTIONAL).unwrap_or(value);
        // A remote's address on this machine (`url = file:///w/r.git`).
        if value.starts_with("file://") {
            let path = Path::new(OsStr::from_bytes(repository_address(value.as_bytes())));
            return Ok(path.is_absolute().then(|| vec![path.to_path_buf()]));
        }
        if let Some(relative) = value.strip_prefix("%(prefix)/") {
            return Ok(Some(
                self.prefixes
                    .iter()
                    .map(|prefix| prefix.join(relative))
                    .collect(),
            ));
        }
        if value.starts_with('/') {
            return Ok(Some(vec![PathBuf::from(value)]));
        }
        let Some(tilde) = value.strip_prefix('~') else {
            return Ok(None);
        };
        let (user, rest) = match tilde.split_once('/') {
            Some((user, rest)) => (user, rest),
            None => (tilde, ""),
        };
        if user.is_empty() {
            return Ok(Some(
                self.homes.iter().map(|home| home.join(rest)).collect(),
            ));
        }
        let home = match self.users.iter().find(|(known, _)| known == user) {
            Some((_, home)) => home.clone(),
            None => {
                if self.users.len() >= Self::MOST_USERS {
                    return Err(format!("more than {} users' homes", Self::MOST_USERS));
                }
                let home = nix::unistd::User::from_name(user)
                    .map_err(|error| format!("the home of {user} cannot be looked up: {error}"))?
                    .map(|found| found.dir);
                self.users.push((user.to_owned(), home.clone()));
                home
            }
        };
        Ok(Some(home.map(|home| home.join(rest)).into_iter().collect()))
    }
}

/// The prefixes git may take `%(prefix)/` and its system configuration
/// from: the one its executable is installed under (`PREFIX/bin/git`,
/// `PREFIX/libexec/git-core/git-*`, `PREFIX/lib/git-core/git-*`), and
/// `/usr` and `/usr/local`, where git built without a runtime prefix
/// looks whatever its path.
fn runtime_prefixes(program: &Path) -> Vec<PathBuf> {
    let installed = program.parent().and_then(|directory| {
        let above = directory.parent()?;
        let in_git_core = directory.file_name() == Some(OsStr::new("git-core"))
            && matches!(above.file_name(), Some(name) if name == "libexec" || name == "lib");
        match in_git_core {
            true => above.parent(),
            false => Some(above),
        }
    });
    let mut prefixes: Vec<PathBuf> = installed.map(Path::to_path_buf).into_iter().collect();
    for usual in ["/usr", "/usr/local"] {
        if !prefixes.iter().any(|prefix| prefix == Path::new(usual)) {
            prefixes.push(PathBuf::from(usual));
        }
    }
    prefixes
}

/// A git configuration's lines, a line ending in `\\` joined to the next.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut pending = String::new();
    for line in text.split('\n') {
        match line.trim_end().strip_suffix('\\') {
            Some(continued) => pending.push_str(continued),
            None => {
                pending.push_str(line);
                lines.push(std::mem::take(&mut pending));
            }
        }
    }
    if !pending.is_empty() {
        lines.push(pending);
    }
    lines
}

/// Where the first character matching `wanted` outside double quotes is,
/// git's `\\` escapes (`\\"` is no quote) honoured.
fn unquoted_position(text: &str, wanted: impl Fn(char) -> bool) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (at, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if !quoted && wanted(c) {
            return Some(at);
        }
    }
    None
}

/// Up to `most` bytes of `path` if it is a regular file, else `None`. The
/// open does not wait (a FIFO the sandbox made where a configuration file
/// is looked for would block it) and nothing but a regular file is read
/// (`/dev/zero`).
fn read_small_file(path: &Path, most: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = Vec::new();
    file.take(most).read_to_end(&mut text).ok()?;
    Some(text)
}

/// What marks a project's directory: a repository, or a build's own file.
/// A build found from a directory below reads the whole project from the
/// top (a Cargo or npm workspace's members, a Gradle build's
/// subprojects).
const PROJECT_MARKERS: &[&str] = &[
    ".git",
    ".hg",
    "Cargo.toml",
    "package.json",
    "pnpm-workspace.yaml",
    "pom.xml",
    "build.gradle",
    "build.gradle.kts",
    "settings.gradle",
    "settings.gradle.kts",
    "build.xml",
    "build.sbt",
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "Makefile",
    "GNUmakefile",
    "makefile",
];

/// Why a program working on the project at `directory` (canonical, and
/// neither it nor a way to it writable) would read what the sandbox could
/// have written there: a writable root inside the project
/// ([`writable_root_under_top`]), or a link among the entries of
/// `directory` or of a directory above it in the project that leads where
/// the sandbox can write ([`linked_out`]).
fn project_refusal(
    directory: &Path,
    name: &str,
    reader: &InstructionReader,
    request: &Request<'_>,
    writable: &dyn Fn(&Path) -> bool,
    scanned: &Scanned,
) -> Option<String> {
    // This process's home only: the requester's `HOME` is the sandbox's to
    // choose, and would stop the search below a writable member.
    let homes: Vec<PathBuf> = std::env::var_os("HOME")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    let layers = project_layers(directory, &homes);
    if let Some(root) = writable_root_under_top(&layers, request.writable_roots) {
        return Some(format!(
            "escalation refused: {name} reads {} from {} (inside the project it works on), \
             which the sandbox can write",
            reader.reads,
            root.display()
        ));
    }
    linked_out(layers, writable, request.writable_roots, scanned)
        .map(|found| found.refusal(name, reader.reads))
}

/// The directories of the project a program that searches upwards works
/// on from `cwd` whose own files it reads: `cwd`, then each directory
/// above it with a [`PROJECT_MARKERS`] file, up to the project's top (the
/// last): the highest of them, but not above the git repository `cwd` is
/// in, a submodule's superproject included (git reads every submodule's
/// own repository; a workspace's members lie beside `cwd`). A home
/// directory or `/` is no project's top unless it is a repository (a
/// `package.json` left in the home would make every project under it
/// one).
fn project_layers<'p>(cwd: &'p Path, homes: &[PathBuf]) -> Vec<&'p Path> {
    let mut layers = vec![cwd];
    for directory in cwd.ancestors() {
        let outside_any_project = directory == Path::new("/")
            || homes
                .iter()
                .any(|home| home.as_path() == directory || home.starts_with(directory));
        // A home that is a repository (dotfiles) is one project still.
        if outside_any_project && directory != cwd && !directory.join(".git").is_dir() {
            break;
        }
        let holds = |name: &str| std::fs::symlink_metadata(directory.join(name)).is_ok();
        if directory != cwd && PROJECT_MARKERS.iter().any(|marker| holds(marker)) {
            layers.push(directory);
        }
        // A repository's own directory bounds the project; a `.git` file
        // (a submodule, a worktree) does not: a workspace's member may be
        // a submodule.
        if directory.join(".git").is_dir() {
            break;
        }
    }
    layers
}

/// A writable root inside the project whose [`project_layers`] are
/// `layers`: below the working directory (the subdirectories a build
/// recurses into, the packages an interpreter imports) or below the
/// project's top.
fn writable_root_under_top<'a>(
    layers: &[&Path],
    writable_roots: &'a [PathBuf],
) -> Option<&'a PathBuf> {
    let top = layers.last()?;
    writable_roots.iter().find(|root| root.starts_with(top))
}

/// Entries read of one directory when looking for links out of it: far
/// more than a project's directory or a git directory holds. Only
/// directories the sandbox cannot write are read (one it can write refuses
/// before), so it cannot fill one past this; a host's directory with more
/// is refused rather than read in part.
const MOST_ENTRIES: usize = 16384;

/// Entries read of all directories for one request: what a request of a
/// thousand operands, each naming a large directory, may cost the server.
const MOST_ENTRIES_PER_REQUEST: usize = 65536;

/// What one request's checks have looked at already: directories
/// [`linked_out`] found no link out of (a directory named by a thousand
/// operands is listed once), the entries read so far, and the git
/// directories judged (a thousand pathspecs in one repository judge it
/// once).
#[derive(Default)]
struct Scanned {
    link_free: RefCell<HashSet<PathBuf>>,
    entries_read: std::cell::Cell<usize>,
    judged_gitdirs: RefCell<HashSet<PathBuf>>,
}

/// What [`linked_out`] found.
enum LinkedOut {
    /// `link` leads to (or through) `place`, which the sandbox can write.
    Link { link: PathBuf, place: PathBuf },
    /// `directory` could not be read whole.
    Unread { directory: PathBuf, why: String },
}

impl LinkedOut {
    fn refusal(&self, name: &str, reads: &str) -> String {
        match self {
            LinkedOut::Link { link, place } => format!(
                "escalation refused: {name} reads {reads} through the link {}, which leads \
                 to {}, which the sandbox can write",
                link.display(),
                place.display()
            ),
            LinkedOut::Unread { directory, why } => format!(
                "escalation refused: {name} reads {reads} from {}, whose links cannot all be \
                 checked: {why}",
                directory.display()
            ),
        }
    }
}

/// The first link among the entries of `directories` (not below them)
/// whose way leads where the sandbox can write, or to a directory that
/// holds one of `writable_roots`: the host may have linked a project's
/// `Makefile.inc`, `target` or `.git/hooks` into a writable root (or `sub`
/// to its parent), and the program follows the link to what the sandbox
/// wrote there. Each directory is listed once, and each link costs one
/// walk ([`writable_place`]); deeper links are not looked for. A directory
/// that is not there holds nothing; one that cannot be listed, or has
/// more than [`MOST_ENTRIES`] (or more than the request's
/// [`MOST_ENTRIES_PER_REQUEST`] so far), is [`LinkedOut::Unread`] (the
/// program may still open a name in it).
fn linked_out<'p>(
    directories: impl IntoIterator<Item = &'p Path>,
    writable: &dyn Fn(&Path) -> bool,
    writable_roots: &[PathBuf],
    scanned: &Scanned,
) -> Option<LinkedOut> {
    let unread = |directory: &Path, why: String| LinkedOut::Unread {
        directory: directory.to_path_buf(),
        why,
    };
    for directory in directories {
        if scanned.link_free.borrow().contains(directory) {
            continue;
        }
        let entries = match std::fs::read_dir(directory) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) if error.kind() == std::io::ErrorKind::NotADirectory => continue,
            Err(error) => return Some(unread(directory, error.to_string())),
        };
        for (read, entry) in entries.enumerate() {
            if read >= MOST_ENTRIES {
                return Some(unread(
                    directory,
                    format!("it has more than {MOST_ENTRIES} entries"),
                ));
            }
            let read_so_far = scanned.entries_read.get() + 1;
            scanned.entries_read.set(read_so_far);
            if read_so_far > MOST_ENTRIES_PER_REQUEST {
                return Some(unread(
                    directory,
                    format!(
                        "the check reads at most {MOST_ENTRIES_PER_REQUEST} entries for one \
                         request"
                    ),
                ));
            }
            let entry = match entry {
                Ok(entry) => entry,
                Err(error) => return Some(unread(directory, error.to_string())),
            };
            let is_link = match entry.file_type() {
                Ok(kind) => kind.is_symlink(),
                Err(error) => return Some(unread(directory, error.to_string())),
            };
            if !is_link {
                continue;
            }
            let link = entry.path();
            if let Some(place) = writable_place(&link, directory, writable) {
                return Some(LinkedOut::Link { link, place });
            }
            // A link to a directory above a writable root leads into it
            // by a name below the link (`sub -> /srv`, `sub/w/x.mk`).
            if let Ok(target) = std::fs::canonicalize(&link) {
                if let Some(root) = writable_roots.iter().find(|root| root.starts_with(&target)) {
                    return Some(LinkedOut::Link {
                        link,
                        place: root.clone(),
                    });
                }
            }
        }
        scanned
            .link_free
            .borrow_mut()
            .insert(directory.to_path_buf());
    }
    None
}

/// Where every program, in the table or not, reads per-user configuration
/// under the home directory: a grant that makes one writable (`"~/.local"
/// = "write"`) lets one escalation with grants plant what a later one's
/// `python3` (`.pth` files) or `git` (`.gitconfig`) runs. The places
/// whose files name commands to run are here too (`credential_process`
/// in `~/.aws/config`, a kubeconfig's `exec`, Docker's `credHelpers`,
/// Gradle's `init.d`, npm's and cargo's configuration).
const IN_HOME: &[&str] = &[
    ".config",
    ".local",
    ".cache",
    ".gitconfig",
    ".ssh",
    ".zshenv",
    ".zshrc",
    ".zprofile",
    ".profile",
    ".bashrc",
    ".bash_profile",
    ".aws",
    ".kube",
    ".docker",
    ".m2",
    ".gradle",
    ".npmrc",
    ".cargo",
];

/// The XDG base directories, which name the same places elsewhere.
const XDG_HOMES: &[&str] = &[
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_STATE_HOME",
    "XDG_CACHE_HOME",
];

/// The variables [`planted_home`] reads: from `escalation_env`, the
/// session's environment that escalations start from, and from this
/// process's own, which names the same places unless an embedder's
/// environment policy set them apart (and where a program without `HOME`
/// looks: the user's home in the password database is, as a rule, the
/// server's `HOME`).
pub(crate) fn home_variables(
    escalation_env: &[(OsString, OsString)],
) -> Vec<(&'static str, PathBuf)> {
    let names = || std::iter::once("HOME").chain(XDG_HOMES.iter().copied());
    let session = names().filter_map(|name| {
        let (_, value) = escalation_env.iter().find(|(set, _)| set == name)?;
        Some((name, PathBuf::from(value)))
    });
    let own = names().filter_map(|name| Some((name, PathBuf::from(std::env::var_os(name)?))));
    let mut variables: Vec<(&'static str, PathBuf)> = Vec::new();
    for variable in session.chain(own) {
        if !variables.contains(&variable) {
            variables.push(variable);
        }
    }
    variables
}

/// Why an escalation with grants would read per-user configuration the
/// sandbox (or a grant) could have written: a place under the home
/// directory or an XDG base directory of `variables` (the environment
/// escalations start from, [`home_variables`]). `cwd` resolves what is
/// relative.
pub(crate) fn planted_home(
    variables: &[(&str, PathBuf)],
    cwd: &Path,
    writable: &dyn Fn(&Path) -> bool,
    writable_roots: &[PathBuf],
) -> Option<String> {
    let places = variables.iter().flat_map(|(name, value)| match *name {
        "HOME" => IN_HOME.iter().map(|place| value.join(place)).collect(),
        _ => vec![value.clone()],
    });
    for place in places {
        // The place itself or a way to it, or a root deeper in it.
        let deeper = || {
            writable_roots
                .iter()
                .find(|root| root.starts_with(cwd.join(&place)))
                .cloned()
        };
        if let Some(writable) = writable_place(&place, cwd, writable).or_else(deeper) {
            return Some(format!(
                "escalation refused: programs read their per-user configuration from {}, \
                 and the sandbox or a grant can write {}",
                place.display(),
                writable.display()
            ));
        }
    }
    None
}

/// Where one of `write_roots`, a grant's, lies where programs read their
/// per-user configuration (the home's dotfiles and caches, the XDG base
/// directories, as this process's environment names them): while a session
/// knows of such a grant, every escalation with grants in it is refused
/// ([`planted_home`]). Said of a skill's or a rule's profile when a session
/// starts and by `policy lint` (probe 232: one skill's cache under
/// `~/.cache` took every skill's grants away, unsaid).
pub fn grant_reaching_user_configuration(write_roots: &[PathBuf], cwd: &Path) -> Option<String> {
    let variables = home_variables(&[]);
    // What refuses without the grant (a hard-linked `~/.gitconfig`) is
    // not the grant's doing (review 233).
    if planted_home(&variables, cwd, &|_| false, &[]).is_some() {
        return None;
    }
    // A place under a root, or a root under a place (review 233: a grant
    // of `~` itself was not seen).
    let granted = |path: &Path| write_roots.iter().any(|root| path.starts_with(root));
    planted_home(&variables, cwd, &granted, write_roots).map(|refused| {
        refused
            .trim_start_matches("escalation refused: ")
            .to_owned()
    })
}

/// What an option means to the walk.
#[derive(Clone, Copy)]
enum Meaning {
    Directory,
    Path,
    Instruction,
    Output,
    Inline,
    HandOver,
    Value,
    /// A value judged as any word.
    Word,
    /// Digits attached, or none.
    Digits,
    /// A value attached, or none.
    Attached,
    Flag,
}

impl Options {
    /// The option `option` is (exactly), if listed.
    fn meaning(&self, option: &[u8]) -> Option<Meaning> {
        let lists = [
            (self.instruction, Meaning::Instruction),
            (self.output, Meaning::Output),
            (self.directory, Meaning::Directory),
            (self.path, Meaning::Path),
            (self.inline, Meaning::Inline),
            (self.hand_over, Meaning::HandOver),
            (self.values, Meaning::Value),
            (self.words, Meaning::Word),
            (self.digits, Meaning::Digits),
            (self.attached, Meaning::Attached),
            (self.flags, Meaning::Flag),
        ];
        // An entry ending in `.` names every option it starts (pnpm's
        // `--config.NAME`).
        let names = |listed: &&str| {
            listed.as_bytes() == option
                || (listed.ends_with('.') && option.starts_with(listed.as_bytes()))
        };
        lists
            .iter()
            .find_map(|(list, meaning)| list.iter().any(names).then_some(*meaning))
            .or_else(|| self.abbreviated(option, &lists))
    }

    /// A long option cut short (`--upload-pa`, `--ev`): git, GNU getopt and
    /// npm take a prefix of a long option as the option. Read as the most
    /// dangerous option it may stand for, and only for the meanings that
    /// judge or refuse more: one that would skip its value (`values`,
    /// `inline`) is left unknown, which judges it, and a directory is only
    /// judged, not gone into (the program may not take it for one).
    fn abbreviated(&self, option: &[u8], lists: &[(&[&str], Meaning)]) -> Option<Meaning> {
        if !option.starts_with(b"--") || option.len() < 3 {
            return None;
        }
        let meaning = lists.iter().find_map(|(list, meaning)| {
            list.iter()
                .any(|listed| listed.starts_with("--") && listed.as_bytes().starts_with(option))
                .then_some(*meaning)
        })?;
        match meaning {
            Meaning::Instruction | Meaning::Output | Meaning::Path => Some(meaning),
            Meaning::Directory => Some(Meaning::Path),
            _ => None,
        }
    }
}

/// Where the walk is in git's `git [global options] <subcommand> [its
/// options and operands]`; other programs stay `Global`.
#[derive(Clone, Copy)]
enum Phase {
    Global,
    Subcommand(Option<&'static Subcommand>),
}

/// Walks the arguments as the program would read them, and judges every
/// word it does not know to be harmless as a path the program may read.
struct ArgumentWalk<'a> {
    reader: &'static InstructionReader,
    name: &'a str,
    request: &'a Request<'a>,
    args: &'a [OsString],
    writable: &'a dyn Fn(&Path) -> bool,
    refused: &'a dyn Fn(&Path, &str) -> Option<String>,
    scanned: &'a Scanned,
}

/// What judging one option decided.
enum Step {
    Next,
    Refused(String),
    /// Its options ended (an interpreter's program text was given).
    OptionsEnd,
    /// `python -m <module>`: the rest belongs to the module's own entry.
    HandOver(OsString),
}

impl ArgumentWalk<'_> {
    fn refusal(&self) -> Option<String> {
        let mut base = self.request.cwd.to_path_buf();
        let mut phase = Phase::Global;
        if self.reader.has_subcommands() {
            // `git-rebase` is `git rebase`.
            if let Some(subcommand) = self
                .reader
                .prefixes
                .iter()
                .find_map(|prefix| self.name.strip_prefix(prefix))
            {
                match self.known_subcommand(subcommand.as_bytes()) {
                    Ok(known) => phase = Phase::Subcommand(known),
                    Err(refusal) => return Some(refusal),
                }
            }
        }
        // Words the program itself rewrites, options' values included.
        for arg in self.args {
            let text = arg.as_bytes();
            if self.reader.expands_variables && text.windows(2).any(|pair| pair == b"${") {
                return Some(self.expanded(text));
            }
            if self.reader.expands_home && names_a_home(text) {
                return Some(self.home_named(text));
            }
            if self.reader.argument_files && text.starts_with(b"@") {
                return Some(format!(
                    "escalation refused: {} may read more arguments from a file ({}), which \
                     the check does not read",
                    self.name,
                    String::from_utf8_lossy(text)
                ));
            }
        }
        let mut options_done = false;
        let mut operands = 0;
        // Operands after git's subcommand.
        let mut subcommand_operands = 0;
        let mut first_subcommand_operand: &[u8] = b"";
        // The subcommand as given, for a refusal of one of its operands.
        let mut subcommand_word: &[u8] = b"";
        // `git config` given a mode that only reads, as an option the walk
        // read as one (not an option's value, not after `--`).
        let mut reads_configuration = false;
        let mut index = 0;
        while let Some(arg) = self.args.get(index) {
            index += 1;
            let text = arg.as_bytes();
            if !options_done && text == b"--" {
                options_done = true;
                continue;
            }
            let is_option = !options_done
                && text.len() > 1
                && (text.starts_with(b"-") || (self.reader.plus_options && text.starts_with(b"+")));
            if !is_option {
                if self.reader.assignments_instruct && text.contains(&b'=') {
                    return Some(self.instruction(text));
                }
                if let Some(reason) = self.judge_word(text, &base) {
                    return Some(reason);
                }
                operands += 1;
                let names_a_project = self.reader.operands_name_projects
                    && (operands == 1 || !self.reader.options_end_at_operand);
                if names_a_project {
                    // Each is a walk up its ancestors: a request of a
                    // million operands is refused, not walked.
                    const MOST_PROJECT_OPERANDS: usize = 1024;
                    if operands > MOST_PROJECT_OPERANDS {
                        return Some(format!(
                            "escalation refused: {} is given more than {MOST_PROJECT_OPERANDS} \
                             operands, too many to judge the projects they name",
                            self.name
                        ));
                    }
                    let named = OsStr::from_bytes(text);
                    let refusal = self.on_either_base(&base, |from| {
                        match self.project_step(&from.join(named)) {
                            Step::Refused(reason) => Some(reason),
                            _ => None,
                        }
                    });
                    if refusal.is_some() {
                        return refusal;
                    }
                }
                if self.reader.instructions_anywhere
                    && self
                        .reader
                        .instruction_subcommands
                        .iter()
                        .any(|runner| runner.as_bytes() == text)
                {
                    return Some(self.instruction(text));
                }
                match phase {
                    Phase::Global if self.reader.runs_its_operand => {
                        return Some(self.instruction(text));
                    }
                    Phase::Global if self.reader.has_subcommands() => {
                        match self.known_subcommand(text) {
                            Ok(known) => {
                                phase = Phase::Subcommand(known);
                                subcommand_word = text;
                            }
                            Err(refusal) => return Some(refusal),
                        }
                    }
                    Phase::Global => {
                        if self.reader.options_end_at_operand {
                            options_done = true;
                        }
                    }
                    Phase::Subcommand(Some(subcommand)) => {
                        if subcommand
                            .instruction_operands
                            .iter()
                            .any(|word| word.as_bytes() == text)
                        {
                            return Some(self.instruction(text));
                        }
                        if subcommand.operands_are_outputs
                            || subcommand
                                .output_operands
                                .iter()
                                .any(|word| word.as_bytes() == text)
                        {
                            // `git-mailinfo` names its subcommand already.
                            let word = match subcommand_word {
                                b"" => text.to_vec(),
                                _ => [subcommand_word, b" ", text].concat(),
                            };
                            return Some(self.writes(&word));
                        }
                        subcommand_operands += 1;
                        if subcommand_operands == 1 {
                            first_subcommand_operand = text;
                        }
                        // Every operand: an option's value before the
                        // address (`fetch --depth 1 /r`, `push -o x /r`)
                        // reads as one to the walk.
                        if subcommand.repository_operand {
                            if let Some(refusal) = self.repository_at(text, &base) {
                                return Some(refusal);
                            }
                        }
                        // `NAME VALUE` sets; `get NAME`, `list`, and `--get*
                        // NAME PATTERN` read.
                        let reads = reads_configuration
                            || matches!(first_subcommand_operand, b"get" | b"list");
                        if subcommand.writes_configuration && subcommand_operands == 2 && !reads {
                            return Some(self.instruction(text));
                        }
                    }
                    Phase::Subcommand(None) => {}
                }
                continue;
            }
            if let Phase::Subcommand(Some(subcommand)) = phase {
                // Not right after another option, which may take it for
                // its value (`--comm --get`: git reads `--comment`).
                let after_an_option = index >= 2
                    && self.args[index - 2].as_bytes().starts_with(b"-")
                    && !CONFIG_READ_MODES.contains(&self.args[index - 2].as_bytes());
                if subcommand.writes_configuration
                    && CONFIG_READ_MODES.contains(&text)
                    && !after_an_option
                {
                    reads_configuration = true;
                }
            }
            if let Phase::Subcommand(_) = phase {
                let name = split_once(text, b'=').map_or(text, |(name, _)| name);
                if self
                    .reader
                    .subcommand_options
                    .output
                    .iter()
                    .any(|listed| names_an_output(listed, name))
                {
                    return Some(self.writes(name));
                }
            }
            let (options, refuses_unknown) = match phase {
                Phase::Global => (&self.reader.options, self.reader.refuses_unknown_options),
                Phase::Subcommand(Some(subcommand)) => (&subcommand.options, false),
                // npm's options, anywhere on its command line.
                Phase::Subcommand(None) if self.reader.options_anywhere => {
                    (&self.reader.options, false)
                }
                Phase::Subcommand(None) => (&OPTIONS, false),
            };
            let mut next_word = || {
                let word = self.args.get(index);
                index += usize::from(word.is_some());
                word.map(|word| word.as_bytes())
            };
            match self.option(options, text, refuses_unknown, &mut base, &mut next_word) {
                Step::Next => {}
                Step::Refused(reason) => return Some(reason),
                Step::OptionsEnd => {
                    options_done = true;
                    // The program came inline (`-c`): no operand is its
                    // script.
                    operands = operands.max(1);
                }
                Step::HandOver(module) => {
                    // Never to another interpreter (`python -m python -m
                    // ...`): one hand-over at most, however long the
                    // request; the rest is judged word by word instead.
                    let reader = reader_of(Path::new(&module))
                        .filter(|reader| reader.options.hand_over.is_empty());
                    if let Some(reader) = reader {
                        let name = format!("{} -m {}", self.name, module.to_string_lossy());
                        return reader_refusal(
                            reader,
                            &name,
                            self.request,
                            self.args.get(index..).unwrap_or_default(),
                            self.writable,
                        );
                    }
                    options_done = true;
                }
            }
        }
        None
    }

    /// The subcommand `word` names: one of the table (`Some`), a plain one
    /// (`None`), or a refusal for one the check does not know (an alias
    /// such as `rb = rebase` would take `-x`; `submodule--helper foreach`).
    fn known_subcommand(&self, word: &[u8]) -> Result<Option<&'static Subcommand>, String> {
        if self
            .reader
            .instruction_subcommands
            .iter()
            .any(|name| name.as_bytes() == word)
        {
            return Err(self.instruction(word));
        }
        if let Some(subcommand) = self.subcommand(word) {
            return Ok(Some(subcommand));
        }
        if self
            .reader
            .plain_subcommands
            .iter()
            .any(|plain| plain.as_bytes() == word)
        {
            return Ok(None);
        }
        Err(format!(
            "escalation refused: {} {} is a subcommand the check does not know (an alias, an \
             internal command or a program found in PATH), which may run what it is given",
            self.name,
            String::from_utf8_lossy(word)
        ))
    }

    fn subcommand(&self, word: &[u8]) -> Option<&'static Subcommand> {
        self.reader
            .subcommands
            .iter()
            .find(|subcommand| subcommand.names.iter().any(|name| name.as_bytes() == word))
    }

    /// One option word (`text`, `-` or `+` first), taking its value from
    /// `next_word` when it is not attached.
    fn option<'w>(
        &self,
        options: &Options,
        text: &'w [u8],
        refuses_unknown: bool,
        base: &mut PathBuf,
        next_word: &mut dyn FnMut() -> Option<&'w [u8]>,
    ) -> Step {
        // `+o name` means what `-o name` does.
        let spelled: Vec<u8> = match text.split_first() {
            Some((b'+', rest)) => [b"-".as_slice(), rest].concat(),
            _ => text.to_vec(),
        };
        if let Some(meaning) = options.meaning(&spelled) {
            return self.apply(meaning, text, None, base, next_word);
        }
        if spelled.starts_with(b"--") {
            if let Some((option, _)) = split_once(&spelled, b'=') {
                if let Some(meaning) = options.meaning(option) {
                    return self.apply(
                        meaning,
                        option,
                        Some(&text[option.len() + 1..]),
                        base,
                        next_word,
                    );
                }
            }
            if refuses_unknown {
                return Step::Refused(self.unknown(text));
            }
            return self.judged(text, base);
        }
        // Clustered short options (`-sf file`, `-kC dir`, `-Wignore`).
        let mut offset = 1;
        while let Some(letter) = spelled.get(offset) {
            let option = [b'-', *letter];
            let rest = &text[offset + 1..];
            offset += 1;
            match options.meaning(&option) {
                Some(Meaning::Flag) => continue,
                // Its digits, if any, then more options (`-l0pe`).
                Some(Meaning::Digits) => {
                    offset += rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
                    continue;
                }
                Some(meaning) => {
                    let attached = (!rest.is_empty()).then_some(rest);
                    return self.apply(meaning, &option, attached, base, next_word);
                }
                None if refuses_unknown => return Step::Refused(self.unknown(text)),
                // An option we do not know may carry a path attached, or
                // be a flag with more options after it (`-qx cmd`, `-qr
                // file`, `-mf file`): a later letter that means more than
                // a flag cannot be told from a value's, so the cluster is
                // refused (an instruction's letter as one).
                None => {
                    let meaning_after = rest.iter().find_map(|&later| {
                        let meaning = options.meaning(&[b'-', later])?;
                        (!matches!(meaning, Meaning::Flag)).then_some((later, meaning))
                    });
                    return match meaning_after {
                        Some((later, Meaning::Instruction)) => {
                            Step::Refused(self.instruction(&[b'-', later]))
                        }
                        Some(_) => Step::Refused(self.unsplit(text)),
                        None => self.judged(rest, base),
                    };
                }
            }
        }
        Step::Next
    }

    /// An option that means `meaning`, its value attached or the next word.
    fn apply<'w>(
        &self,
        meaning: Meaning,
        option: &[u8],
        attached: Option<&'w [u8]>,
        base: &mut PathBuf,
        next_word: &mut dyn FnMut() -> Option<&'w [u8]>,
    ) -> Step {
        if let Meaning::Flag = meaning {
            return Step::Next;
        }
        if let Meaning::Instruction = meaning {
            return Step::Refused(self.instruction(option));
        }
        if let Meaning::Output = meaning {
            return Step::Refused(self.writes(option));
        }
        if let Meaning::Attached = meaning {
            return match attached {
                Some(value) => self.judged(value, base),
                None => Step::Next,
            };
        }
        let Some(value) = attached.or_else(next_word) else {
            return Step::Next;
        };
        match meaning {
            Meaning::Directory => {
                let directory = Path::new(OsStr::from_bytes(value));
                if let Some(place) = self.writable_from_either(directory, base) {
                    return self.refused_at(&place);
                }
                // Not writable, nor any way to it: what it names now is
                // what it will be. Resolved one `-C` at a time, as the
                // program changes directory: a chain of them resolved
                // whole could pass the kernel's limit on links.
                let joined = base.join(directory);
                *base = match std::fs::canonicalize(&joined) {
                    Ok(resolved) => resolved,
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => joined,
                    Err(error) => return Step::Refused(self.unresolved(&joined, &error)),
                };
                if let Some(reason) = self.repository(base) {
                    return Step::Refused(reason);
                }
                self.project_step(base)
            }
            // `-` for a file is standard input, the sandbox's to fill.
            Meaning::Path if value == b"-" => self.refused_at(Path::new("standard input")),
            Meaning::Path => {
                // As any word first: the place it names, from either base,
                // a `file:` URL's too, its `%`-escapes, the repository a
                // `file://` address names. Then what the path leads to.
                if let Some(reason) = self.judge_word(value, base) {
                    return Step::Refused(reason);
                }
                let value = file_url_path(value).unwrap_or(value);
                let path = Path::new(OsStr::from_bytes(value));
                // A repository named (`git --git-dir`, `--work-tree`,
                // `push --repo`).
                if let Some(reason) = self.repository_at(value, base) {
                    return Step::Refused(reason);
                }
                // A project named by a file in it (`cargo --manifest-path`,
                // `git --work-tree`, `make -f`): its own tree counts too.
                match self.reader.searches_upwards {
                    true => self.project_step(&base.join(path)),
                    false => Step::Next,
                }
            }
            Meaning::Inline => Step::OptionsEnd,
            Meaning::HandOver => Step::HandOver(OsStr::from_bytes(value).to_owned()),
            Meaning::Word => self.judged(value, base),
            Meaning::Value
            | Meaning::Flag
            | Meaning::Instruction
            | Meaning::Output
            | Meaning::Digits
            | Meaning::Attached => Step::Next,
        }
    }

    /// The project `named` is in (itself if a directory, else its
    /// directory): judged as the working directory's is
    /// ([`project_refusal`]). Nothing there is no project; a path that
    /// cannot be resolved (a loop of links) is refused.
    fn project_step(&self, named: &Path) -> Step {
        let resolved = match std::fs::canonicalize(named) {
            Ok(resolved) => resolved,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Step::Next,
            Err(error) => return Step::Refused(self.unresolved(named, &error)),
        };
        let directory = match resolved.is_dir() {
            true => resolved.as_path(),
            false => resolved.parent().unwrap_or(Path::new("/")),
        };
        match project_refusal(
            directory,
            self.name,
            self.reader,
            self.request,
            self.writable,
            self.scanned,
        ) {
            Some(reason) => Step::Refused(reason),
            None => Step::Next,
        }
    }

    /// `judge` from where the walk believes the program works, then from
    /// where it started when the walk moved that: an option the walk takes
    /// for a directory may not be one to the program (npm's `--dir` and
    /// `--prefix` change none).
    fn on_either_base<T>(&self, base: &Path, judge: impl Fn(&Path) -> Option<T>) -> Option<T> {
        judge(base).or_else(|| {
            (base != self.request.cwd)
                .then(|| judge(self.request.cwd))
                .flatten()
        })
    }

    /// For git, the repository it would use from `directory` (`-C`,
    /// `--git-dir`, `--work-tree`), judged as the working directory's is.
    fn repository(&self, directory: &Path) -> Option<String> {
        if !self.reader.config_includes {
            return None;
        }
        repository_refusal(
            self.name,
            directory,
            self.request,
            self.writable,
            self.scanned,
        )
    }

    fn unresolved(&self, path: &Path, error: &std::io::Error) -> String {
        format!(
            "escalation refused: {} works on {}, which cannot be resolved to check it: {error}",
            self.name,
            path.display()
        )
    }

    /// [`writable_place`] of `path`, from either base.
    fn writable_from_either(&self, path: &Path, base: &Path) -> Option<PathBuf> {
        self.on_either_base(base, |from| writable_place(path, from, self.writable))
    }

    /// A word that may name a file: itself, each of its space-separated
    /// parts, and what follows each `=` in them (`NAME=value`,
    /// `--option=value`, and an option's value that is itself one, as in
    /// `--node-options=--require=/w/x.js`), from either base; for git, a
    /// `file://` address in it too.
    fn judge_word(&self, word: &[u8], base: &Path) -> Option<String> {
        // git and pip decode `%XX` in a `file:` URL's path; the check does
        // not, so it judges none (a review: `file:///w%2Fx` named `/w/x`).
        if file_url_path(word).is_some_and(|path| path.contains(&b'%')) {
            return Some(format!(
                "escalation refused: {} is given a file: URL with %-escapes, which the check \
                 does not decode",
                self.name
            ));
        }
        self.on_either_base(base, |from| self.judge_word_from(word, from))
            .or_else(|| self.file_addresses(word, base))
    }

    /// For git, each `file://` address in `word` (`--remote=file:///r`),
    /// judged as the repository git would run in.
    fn file_addresses(&self, word: &[u8], base: &Path) -> Option<String> {
        if !self.reader.config_includes {
            return None;
        }
        let mut rest = word;
        while let Some(at) = memchr::memmem::find(rest, b"file://") {
            if let Some(refusal) = self.repository_at(&rest[at..], base) {
                return Some(refusal);
            }
            rest = &rest[at + b"file://".len()..];
        }
        None
    }

    /// For git, the repository `word` names (a path or a `file://`
    /// address, from either base), judged when it is there: git runs its
    /// hooks and reads its configuration.
    fn repository_at(&self, word: &[u8], base: &Path) -> Option<String> {
        let address = Path::new(OsStr::from_bytes(repository_address(word)));
        self.on_either_base(base, |from| {
            let path = from.join(address);
            std::fs::symlink_metadata(&path).ok()?;
            self.repository(&path)
        })
    }

    fn judge_word_from(&self, word: &[u8], base: &Path) -> Option<String> {
        // Each part is a walk of the file system, as long as the part: a
        // word of megabytes of `=` or `:` is refused rather than walked for
        // each.
        const MOST_BYTES: usize = 16 << 20;
        let separators = word
            .iter()
            .filter(|&&byte| byte == b'=' || byte == b':')
            .count();
        if separators.saturating_mul(word.len()) / 2 > MOST_BYTES {
            return Some(format!(
                "escalation refused: {} has an argument with too many `=` or `:` to judge \
                 what it names",
                self.name
            ));
        }
        let parts = std::iter::once(word).chain(
            word.split(|byte| byte.is_ascii_whitespace())
                .filter(|part| part.len() < word.len()),
        );
        parts
            .flat_map(|part| {
                // Whole, and what follows each `=` or `:` (`--opt=P`,
                // `-javaagent:P`, whose `P` may hold a `:` itself), and each
                // entry of a `:` list (a class path, a review's).
                let after_separators = part
                    .iter()
                    .enumerate()
                    .filter(|(_, &byte)| byte == b'=' || byte == b':')
                    .map(move |(at, _)| &part[at + 1..]);
                let entries = part
                    .split(|&byte| byte == b':')
                    .filter(move |entry| entry.len() < part.len());
                std::iter::once(part)
                    .chain(after_separators)
                    .chain(entries)
                    // A `file:` URL's path, as pip and npm read one
                    // (`file:///w/x`, `file:/w/x`, `git+file://`, `name @
                    // file://...`).
                    .flat_map(|word| std::iter::once(word).chain(file_url_path(word)))
            })
            .filter(|word| !word.is_empty())
            .find_map(|word| {
                writable_place(Path::new(OsStr::from_bytes(word)), base, self.writable)
            })
            .and_then(|place| (self.refused)(&place, &format!(" (its argument {})", shown(word))))
    }

    fn judged(&self, word: &[u8], base: &Path) -> Step {
        match self.judge_word(word, base) {
            Some(reason) => Step::Refused(reason),
            None => Step::Next,
        }
    }

    fn refused_at(&self, place: &Path) -> Step {
        match (self.refused)(place, "") {
            Some(reason) => Step::Refused(reason),
            None => Step::Next,
        }
    }

    fn instruction(&self, word: &[u8]) -> String {
        format!(
            "escalation refused: {} {} gives it instructions to run outside the sandbox",
            self.name,
            String::from_utf8_lossy(word)
        )
    }

    fn writes(&self, option: &[u8]) -> String {
        format!(
            "escalation refused: {} {} writes a file where its arguments say, outside the \
             sandbox; run it in place, where it writes only what the sandbox may",
            self.name,
            String::from_utf8_lossy(option)
        )
    }

    fn expanded(&self, word: &[u8]) -> String {
        format!(
            "escalation refused: {} replaces ${{NAME}} in {} with the variable's value, which \
             the sandbox can set",
            self.name,
            String::from_utf8_lossy(word)
        )
    }

    fn home_named(&self, word: &[u8]) -> String {
        format!(
            "escalation refused: {} reads the ~ in {} as a home directory, which the check \
             does not follow",
            self.name,
            String::from_utf8_lossy(word)
        )
    }

    fn unsplit(&self, word: &[u8]) -> String {
        format!(
            "escalation refused: {} {} joins an option the check does not know with one that \
             names what it reads, which it cannot tell apart",
            self.name,
            String::from_utf8_lossy(word)
        )
    }

    fn unknown(&self, word: &[u8]) -> String {
        format!(
            "escalation refused: {} {} is an option the check does not know, which may name \
             what it runs",
            self.name,
            String::from_utf8_lossy(word)
        )
    }
}

/// Whether `option` is `listed`, an option every subcommand may take that
/// names a file it writes, or `listed` cut short past its first word, as
/// git's option parser takes it (`read-tree --index-o`). Not a shorter
/// cut: `--index` is an option of its own (`apply --index`, `stash pop
/// --index`), and git's diff options (`--output`) take no cut at all.
fn names_an_output(listed: &str, option: &[u8]) -> bool {
    let listed = listed.as_bytes();
    let first_word = listed
        .iter()
        .skip(2)
        .position(|&byte| byte == b'-')
        .map_or(listed.len(), |at| at + 2);
    option == listed || (option.len() > first_word && listed.starts_with(option))
}

/// The path a `file:` URL in `word` names: after `file://` and a host, or
/// after `file:` alone (npm's `file:../x`).
fn file_url_path(word: &[u8]) -> Option<&[u8]> {
    let at = memchr::memmem::find(word, b"file:")?;
    let rest = &word[at + b"file:".len()..];
    let path = match rest.strip_prefix(b"//") {
        Some(authority) => &authority[authority.iter().position(|&byte| byte == b'/')?..],
        None => rest,
    };
    (!path.is_empty()).then_some(path)
}

/// The path a repository address names: a `file://` URL's path (after
/// its host, which git lets be `localhost` or empty), else the word.
fn repository_address(word: &[u8]) -> &[u8] {
    let Some(url) = word.strip_prefix(b"file://") else {
        return word;
    };
    match url.iter().position(|&byte| byte == b'/') {
        Some(at) => &url[at..],
        None => url,
    }
}

/// A `~` where a program that expands it would read a home directory: at
/// the word's start, at a value's after `=`, in npm's `file:~`, or in a
/// short option's attached value (`-f~/m`). What follows the `~` up to a
/// `/` is a user's name; one with a blank in it (`~ tweak`, a commit
/// message) names a home only where the host has such a user (directory
/// services can: "john smith"), which is asked then.
fn names_a_home(word: &[u8]) -> bool {
    let short_option = word.starts_with(b"-") && !word.starts_with(b"--");
    let at_a_home = |at: usize| {
        let user = word[at + 1..]
            .split(|&byte| byte == b'/')
            .next()
            .unwrap_or_default();
        if !user.iter().any(u8::is_ascii_whitespace) {
            return true;
        }
        match std::str::from_utf8(user) {
            Ok(user) => !matches!(nix::unistd::User::from_name(user), Ok(None)),
            Err(_) => true,
        }
    };
    word.iter().enumerate().any(|(at, &byte)| {
        byte == b'~'
            && (at == 0
                || word[..at].ends_with(b"=")
                || word[..at].ends_with(b"file:")
                || short_option)
            && at_a_home(at)
    })
}

/// `word` split at the first `separator`.
fn split_once(word: &[u8], separator: u8) -> Option<(&[u8], &[u8])> {
    let at = word.iter().position(|byte| *byte == separator)?;
    Some((&word[..at], &word[at + 1..]))
}

/// Where a configuration file entry points, for every home the program
/// might use: the server's and the one in the request. A relative value
/// gives a relative path: the program takes it from wherever it is then
/// (git from the top of the work tree, or from `-C`'s directory).
fn config_candidates(file: &str, request: &Request<'_>) -> Vec<PathBuf> {
    let requested = |name: &str| -> Option<PathBuf> {
        request.env.iter().find_map(|entry| {
            let value = entry.as_bytes().strip_prefix(name.as_bytes())?;
            let value = value.strip_prefix(b"=")?;
            Some(PathBuf::from(OsStr::from_bytes(value)))
        })
    };
    let variable = |name: &str| -> Vec<PathBuf> {
        std::env::var_os(name)
            .map(PathBuf::from)
            .into_iter()
            .chain(requested(name))
            .collect()
    };
    let homes = variable("HOME");
    if let Some(relative) = file.strip_prefix("~/") {
        return homes.iter().map(|home| home.join(relative)).collect();
    }
    if let Some(relative) = file.strip_prefix("xdg:") {
        let mut bases = variable("XDG_CONFIG_HOME");
        bases.extend(homes.iter().map(|home| home.join(".config")));
        return bases.iter().map(|base| base.join(relative)).collect();
    }
    if let Some(rest) = file.strip_prefix('$') {
        let (name, relative) = rest.split_once('/').unwrap_or((rest, ""));
        return variable(name)
            .iter()
            .map(|base| base.join(relative))
            .collect();
    }
    if let Some(relative) = file.strip_prefix("@prefix/") {
        // /usr/local/bin/git reads /usr/local/etc/gitconfig.
        return runtime_prefixes(request.program)
            .iter()
            .map(|prefix| prefix.join(relative))
            .collect();
    }
    vec![PathBuf::from(file)]
}

/// The first place on the way to `path` (relative to `base`) the sandbox
/// could write or fill, walked as the kernel walks it: name by name, each
/// link followed where it stands and `..` taken from the directory it is
/// in. A directory on the way the sandbox can write may hold a link it
/// planted (and may re-point after this check); what is reached through a
/// descriptor or another process (`/dev/stdin`, `/dev/fd/N`, anything
/// under `/proc`) is whatever the requester hands the program, which the
/// server, looking from its own process, cannot see.
///
/// The walk ends at the first name that does not exist (nothing below it
/// can be opened either): the path is then judged by where it got to. A
/// walk of more than [`WALK_LIMIT`] names and links is no path a program
/// is given in earnest, and counts as writable. Every word of a request
/// may come here: each name costs one `lstat`, and `.` none.
fn writable_place(path: &Path, base: &Path, writable: &dyn Fn(&Path) -> bool) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let full = base.join(path);
    // The path's own steps as they come (a word may be megabytes of
    // `./`); those of the links on the way, in front of them.
    let mut given = steps(&full);
    let mut followed: VecDeque<WalkStep> = VecDeque::new();
    let mut real = PathBuf::from("/");
    if writable(&real) {
        return Some(real);
    }
    let mut walked = 0;
    // Whether `real` is a regular file with other names, from its lstat.
    let mut other_names = false;
    while let Some(step) = followed.pop_front().or_else(|| given.next()) {
        walked += 1;
        if walked > WALK_LIMIT {
            return Some(full.clone());
        }
        match step {
            WalkStep::Up => {
                real.pop();
                other_names = false;
            }
            WalkStep::Into(name) => {
                let next = real.join(&name);
                if is_handed(&next) {
                    return Some(next);
                }
                match std::fs::symlink_metadata(&next) {
                    Ok(meta) if meta.is_symlink() => {
                        let Ok(target) = std::fs::read_link(&next) else {
                            return Some(next);
                        };
                        if target.is_absolute() {
                            real = PathBuf::from("/");
                        }
                        other_names = false;
                        let link: Vec<WalkStep> = steps(&target).collect();
                        for step in link.into_iter().rev() {
                            followed.push_front(step);
                        }
                        continue;
                    }
                    Ok(meta) => {
                        other_names = meta.is_file() && meta.nlink() > 1;
                        real = next;
                    }
                    Err(_) => break,
                }
            }
        }
        if is_handed(&real) || writable(&real) {
            return Some(real);
        }
    }
    // The same file by another name (a hard link, made by the host, in a
    // writable root) is written there (probe 138: a `~/.gitconfig` linked
    // from a dotfiles checkout in the workspace). Where it lies is not
    // found: a file with other names counts as writable, outside the
    // system's directories, whose programs have such names of their own.
    if other_names && !crate::policy::in_the_system(&real) {
        return Some(real);
    }
    None
}

/// Names and links a walk may take before it counts as writable: far more
/// than any real path (`PATH_MAX` is 4096 bytes; the kernel follows 40
/// links).
const WALK_LIMIT: usize = 4096;

/// One step of a walk.
enum WalkStep {
    Into(OsString),
    Up,
}

/// `path`'s steps: its names and `..`, without `/` and `.`.
fn steps(path: &Path) -> impl Iterator<Item = WalkStep> + '_ {
    path.components().filter_map(|component| match component {
        Component::Normal(name) => Some(WalkStep::Into(name.to_owned())),
        Component::ParentDir => Some(WalkStep::Up),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

/// Whether `path` is reached through a descriptor or a process: filled by
/// whoever starts the program, not found on the file system.
fn is_handed(path: &Path) -> bool {
    path.starts_with("/proc")
        || path.starts_with("/dev/fd")
        || ["/dev/stdin", "/dev/stdout", "/dev/stderr"]
            .iter()
            .any(|stream| path.starts_with(stream))
}

#[cfg(test)]
#[path = "planted_tests.rs"]
mod tests;
