//! The config file: named profiles and the environment policy.
//!
//! ```toml
//! default_profile = "build"
//! rules = ["team.rules"]      # relative to this file's directory
//! skills = ["skills"]
//!
//! [profiles.build]
//! extends = "workspace-write"
//! network = "enabled"
//!
//! [profiles.fetch]            # a network that reaches only what it names
//! extends = "workspace-write"
//! network = { mode = "limited", domains = { "crates.io" = "allow", "**.crates.io" = "allow" } }
//!
//! # A connection denied once a person was asked ends the command
//! # ("cancel", the default), or only fails ("fail-connection").
//! on_network_denial = "cancel"
//!
//! [env]
//! inherit = "core"            # all | core | none
//! exclude = ["*KEY*", "*TOKEN*"]
//! set = { CI = "1" }
//! include_only = []
//!
//! [audit]
//! log = "/var/log/execgate/audit.jsonl"
//! max_bytes = 67108864        # rotate past this size
//! keep = 5                    # rotated files kept
//! env_values = ["LANG"]       # variables recorded with their values
//! redact_args = ["*token*"]   # arguments recorded as [REDACTED]
//! on_failure = "deny"         # deny | warn, when a record cannot be written
//! sync = "escalations"        # never (default) | escalations: fdatasync those
//! ```
//!
//! Unknown keys are errors that name the key and the file. A missing file
//! is fine when it is the default location, an error when named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use execgate_core_bridge::server::sandbox::ProfileSet;
use execgate_core_bridge::{EnvInherit, EnvPolicy, OnNetworkDenial};

#[derive(Default)]
pub struct Config {
    pub default_profile: Option<String>,
    pub profiles: ProfileSet,
    pub env: EnvPolicy,
    pub rules: Vec<PathBuf>,
    pub skills: Vec<PathBuf>,
    pub audit: AuditSettings,
    pub on_network_denial: OnNetworkDenial,
}

/// `[audit]`.
#[derive(Default)]
pub struct AuditSettings {
    pub log: Option<PathBuf>,
    pub max_bytes: Option<u64>,
    pub keep: Option<usize>,
    pub env_values: Vec<String>,
    pub redact_args: Vec<String>,
    pub warn_on_failure: bool,
    pub sync_escalations: bool,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    default_profile: Option<String>,
    profiles: Option<toml::Table>,
    env: Option<EnvSection>,
    #[serde(default)]
    rules: Vec<PathBuf>,
    #[serde(default)]
    skills: Vec<PathBuf>,
    audit: Option<AuditSection>,
    on_network_denial: Option<DenialSpec>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
enum DenialSpec {
    Cancel,
    FailConnection,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditSection {
    log: Option<PathBuf>,
    max_bytes: Option<u64>,
    keep: Option<usize>,
    #[serde(default)]
    env_values: Vec<String>,
    #[serde(default)]
    redact_args: Vec<String>,
    on_failure: Option<FailureSpec>,
    sync: Option<SyncSpec>,
}

#[derive(serde::Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum SyncSpec {
    Never,
    Escalations,
}

#[derive(serde::Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum FailureSpec {
    Deny,
    Warn,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvSection {
    inherit: Option<InheritSpec>,
    exclude: Option<Vec<String>>,
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    include_only: Vec<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum InheritSpec {
    All,
    Core,
    None,
}

/// `$XDG_CONFIG_HOME/execgate/config.toml`, else `~/.config/...`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("execgate/config.toml"))
}

/// The most of a config file read: far more than any config holds
/// (probe 203: `--config /dev/zero` read until memory ran out).
const MOST_CONFIG_BYTES: u64 = 1 << 20;

/// The text of the config file at `path`. The default one must be a
/// regular file (probe 203: a FIFO there held every command, `doctor`
/// too); one named on the command line may be a pipe (`--config <(...)`).
fn read_config(path: &Path, named: bool) -> std::io::Result<String> {
    use std::io::Read;
    if !named && !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::other("it is not a regular file"));
    }
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MOST_CONFIG_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MOST_CONFIG_BYTES {
        return Err(std::io::Error::other("it is larger than 1 MiB"));
    }
    Ok(text)
}

/// The default config file ([`default_path`]), if there is one. Only
/// nothing at all at its path means none: a link to nothing, a link in a
/// loop, or a directory on the way that cannot be searched or is a link
/// to nothing is an error, never a config skipped (its rules and profile
/// would silently not apply).
fn default_file() -> Result<Option<PathBuf>> {
    let Some(path) = default_path() else {
        return Ok(None);
    };
    match std::fs::symlink_metadata(&path) {
        // Reading it says what is wrong with it, if anything.
        Ok(_) => Ok(Some(path)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            // A directory on the way may be a link to nothing: a config
            // kept on a drive not mounted now, say.
            let dangling = path.ancestors().skip(1).find(|dir| {
                std::fs::symlink_metadata(dir).is_ok_and(|meta| meta.is_symlink())
                    && std::fs::metadata(dir).is_err()
            });
            match dangling {
                Some(link) => anyhow::bail!(
                    "cannot read config file {}: {} is a link to nothing; mend the link, or \
                     set XDG_CONFIG_HOME to another directory",
                    path.display(),
                    link.display()
                ),
                None => Ok(None),
            }
        }
        Err(error) => {
            Err(error).with_context(|| format!("cannot read config file {}", path.display()))
        }
    }
}

/// A path the config file names: `~` and `~/...` from the home
/// directory, as in profiles; a relative one from the file's directory
/// `base`.
fn from_config(base: &Path, named: &Path) -> Result<PathBuf> {
    let Some(text) = named.to_str().filter(|text| text.starts_with('~')) else {
        return Ok(base.join(named));
    };
    let rest = &text[1..];
    if !rest.is_empty() && !rest.starts_with('/') {
        anyhow::bail!("{text:?}: `~user` is not expanded; write the path out");
    }
    let home = std::env::home_dir()
        .filter(|home| home.is_absolute())
        .with_context(|| format!("{text:?}: no home directory is known (HOME)"))?;
    Ok(home.join(rest.trim_start_matches('/')))
}

/// A top-level key of the config written below a `[table]` header, where
/// TOML reads it as the table's own: the key and the table.
fn misplaced_top_level_key(text: &str) -> Option<(&'static str, String)> {
    const TOP_LEVEL: [&str; 4] = ["default_profile", "rules", "skills", "on_network_denial"];
    let document: toml::Table = toml::from_str(text).ok()?;
    let mut tables = Vec::new();
    for (name, value) in &document {
        let toml::Value::Table(table) = value else {
            continue;
        };
        tables.push((name.clone(), table));
        if name == "profiles" {
            for (profile, value) in table {
                if let toml::Value::Table(inner) = value {
                    tables.push((format!("profiles.{profile}"), inner));
                }
            }
        }
    }
    tables.into_iter().find_map(|(name, table)| {
        TOP_LEVEL
            .into_iter()
            .find(|key| table.contains_key(*key))
            .map(|key| (key, name))
    })
}

impl Config {
    /// The profile `name`, as a session takes it. An unknown one says
    /// where profiles are defined: `file`, the config file read, if any.
    pub fn profile(
        &self,
        name: &str,
        file: Option<&Path>,
    ) -> Result<execgate_core_bridge::server::sandbox::PermissionProfile> {
        use execgate_core_bridge::server::sandbox::SandboxError;
        self.profiles
            .get(name)
            .map_err(|error| match (&error, file) {
                (SandboxError::UnknownProfile { .. }, Some(file)) => anyhow::anyhow!(
                    "{error}: define it as [profiles.{name}] in {}, or pass the config file \
                     that does with --config",
                    file.display()
                ),
                (SandboxError::UnknownProfile { .. }, None) => anyhow::anyhow!(
                    "{error}: no config file was read; define it as [profiles.{name}] in \
                     $XDG_CONFIG_HOME/execgate/config.toml (~/.config/execgate/config.toml), \
                     or in a file --config names"
                ),
                _ => error.into(),
            })
    }

    pub fn load(explicit: Option<&Path>) -> Result<Config> {
        Config::load_naming(explicit).map(|(config, _)| config)
    }

    /// [`Config::load`], with the file it read (`None`: no config file).
    pub fn load_naming(explicit: Option<&Path>) -> Result<(Config, Option<PathBuf>)> {
        let path = match explicit {
            // Relative paths in it are relative to its directory, which a
            // relative name does not give.
            Some(path) => std::path::absolute(path)
                .with_context(|| format!("cannot find config file {}", path.display()))?,
            None => match default_file()? {
                Some(path) => path,
                None => return Ok((Config::default(), None)),
            },
        };
        let text = read_config(&path, explicit.is_some()).with_context(|| {
            let link = std::fs::read_link(&path)
                .map(|target| format!(" (a link to {})", target.display()))
                .unwrap_or_default();
            format!("cannot read config file {}{link}", path.display())
        })?;
        Ok((Config::parse(&text, &path)?, Some(path)))
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        // TOML's commonest mistake (probe 142): a top-level key below a
        // `[table]` is that table's, whose error lists the table's keys.
        // Looked for only once the file is refused.
        let misplaced = || {
            misplaced_top_level_key(text).map(|(key, table)| {
                format!(
                    "config file {}: `{key}` is a top-level key, but it comes after the \
                     [{table}] header, so TOML reads it as part of that table: move it above \
                     the first [table]",
                    path.display()
                )
            })
        };
        let file: ConfigFile = toml::from_str(text).with_context(|| {
            misplaced().unwrap_or_else(|| format!("config file {}", path.display()))
        })?;
        let mut profiles = ProfileSet::default();
        if file.profiles.is_some() {
            // Its errors name the file.
            profiles
                .add_toml_within(text, Some(path))
                .map_err(|error| match misplaced() {
                    Some(hint) => anyhow::Error::new(error).context(hint),
                    None => error.into(),
                })?;
            // What a profile's entries mean is read when it is used; read
            // every one now, so that a mistake names this file, and is
            // found before a session needs the profile.
            for name in profiles.names() {
                profiles
                    .get(name)
                    .with_context(|| format!("config file {}", path.display()))?;
            }
        }
        if let Some(name) = &file.default_profile {
            profiles.get(name).with_context(|| {
                format!("config file {}: default_profile = {name:?}", path.display())
            })?;
        }
        let mut env = EnvPolicy::default();
        if let Some(section) = file.env {
            if let Some(inherit) = section.inherit {
                env.inherit = match inherit {
                    InheritSpec::All => EnvInherit::All,
                    InheritSpec::Core => EnvInherit::Core,
                    InheritSpec::None => EnvInherit::None,
                };
            }
            if let Some(exclude) = section.exclude {
                env.exclude = exclude;
            }
            env.set = section.set;
            env.include_only = section.include_only;
        }
        // As it loads, not as a session builds it (probe 203: `policy lint`
        // and `doctor` passed a config every command then refused).
        env.check()
            .with_context(|| format!("config file {}: [env]", path.display()))?;
        if let Some(audit) = &file.audit {
            audit
                .check()
                .with_context(|| format!("config file {}", path.display()))?;
        }
        let base = path.parent().unwrap_or(Path::new("/"));
        let named = |named: &PathBuf| {
            from_config(base, named).with_context(|| format!("config file {}", path.display()))
        };
        let rules = file.rules.iter().map(named).collect::<Result<_>>()?;
        let skills = file.skills.iter().map(named).collect::<Result<_>>()?;
        let log = file
            .audit
            .as_ref()
            .and_then(|audit| audit.log.as_ref())
            .map(named)
            .transpose()?;
        let audit = file
            .audit
            .map_or_else(AuditSettings::default, |audit| AuditSettings {
                log,
                max_bytes: audit.max_bytes,
                keep: audit.keep,
                env_values: audit.env_values,
                redact_args: audit.redact_args,
                warn_on_failure: audit.on_failure == Some(FailureSpec::Warn),
                sync_escalations: audit.sync == Some(SyncSpec::Escalations),
            });
        Ok(Config {
            default_profile: file.default_profile,
            profiles,
            env,
            rules,
            skills,
            audit,
            on_network_denial: match file.on_network_denial {
                Some(DenialSpec::FailConnection) => OnNetworkDenial::FailConnection,
                Some(DenialSpec::Cancel) | None => OnNetworkDenial::Cancel,
            },
        })
    }
}

/// The smallest `[audit] max_bytes`: about fifty records. Below it the log
/// rotates every few records, and old records are soon dropped.
const LEAST_AUDIT_BYTES: u64 = 64 << 10;

/// The most older files of the log `[audit] keep` may ask for: each
/// rotation renames them one by one (probe 203: `keep` of 2^63 hung every
/// session's start).
const MOST_AUDIT_FILES: usize = 10_000;

impl AuditSection {
    /// Refuses settings under which rotation drops records as fast as they
    /// are written.
    fn check(&self) -> Result<()> {
        if self
            .max_bytes
            .is_some_and(|bytes| bytes < LEAST_AUDIT_BYTES)
        {
            anyhow::bail!(
                "[audit] max_bytes must be at least {LEAST_AUDIT_BYTES} (64 KiB): below that \
                 the log rotates every few records"
            );
        }
        if self.keep == Some(0) {
            anyhow::bail!(
                "[audit] keep must be at least 1: with 0, each rotation deletes every record \
                 in the log"
            );
        }
        execgate_audit::RecordOptions::new(self.env_values.clone(), &self.redact_args)
            .context("[audit] redact_args")?;
        if self.keep.is_some_and(|keep| keep > MOST_AUDIT_FILES) {
            anyhow::bail!(
                "[audit] keep must be at most {MOST_AUDIT_FILES}: each rotation renames every \
                 older file; keep more history with a larger max_bytes"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_name_the_key_and_the_file() {
        let path = Path::new("/etc/execgate/config.toml");
        // (text, words the error must contain)
        let cases = [
            ("colour = true\n", "colour"),
            ("[env]\ninherit = \"some\"\n", "some"),
            ("[profiles.a]\nextend = \"read-only\"\n", "extend"),
            (
                "[audit]\nmax_bytes = 0\n",
                "max_bytes must be at least 65536",
            ),
            ("[audit]\nkeep = 0\n", "keep must be at least 1"),
            ("[audit]\nkeep = 100000000\n", "keep must be at most 10000"),
            // Probe 203: refused only as a session was built, after
            // `policy lint` and `doctor` had passed them.
            ("[env]\nexclude = [\"*TOKEN*\", \"[A-\"]\n", "[A-"),
            ("[env]\ninclude_only = [\"[\"]\n", "bad environment pattern"),
            ("[audit]\nredact_args = [\"[\"]\n", "redact_args"),
            ("[env]\nset = { \"A=B\" = \"x\" }\n", "cannot hold '='"),
            ("[env]\nset = { \"\" = \"x\" }\n", "an empty name"),
            ("[env]\nset = { A = \"x\\u0000y\" }\n", "a NUL byte"),
            // A probe found these three without the file's name: a
            // profile's entries were read only when a session used it.
            (
                "[profiles.x]\nnetwork = { mode = \"limited\", domian = {} }\n",
                "network.domian",
            ),
            ("[profiles.x]\nnetwork = \"limitted\"\n", "limitted"),
            ("default_profile = \"nosuch\"\n", "nosuch"),
            // A probe redefined the presets, and "read-only" in the audit
            // log meant what its file said.
            (
                "[profiles.read-only]\nfilesystem = { \"/\" = \"write\" }\n",
                "[profiles.read-only]: \"read-only\" is a preset's name",
            ),
            (
                "[profiles.workspace-write]\nextends = \"read-only\"\n",
                "[profiles.workspace-write]",
            ),
        ];
        for (text, words) in cases {
            let error = format!("{:#}", Config::parse(text, path).err().unwrap());
            assert!(error.contains(words), "{error}");
            assert!(error.contains("/etc/execgate/config.toml"), "{error}");
        }
    }

    /// Probe 203: a FIFO at the default config's path held every command,
    /// `doctor` too, and `--config /dev/zero` read until memory ran out.
    #[test]
    fn a_config_is_read_only_from_a_file_of_a_configs_size() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("config.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let error = read_config(&fifo, false).unwrap_err().to_string();
        assert!(error.contains("not a regular file"), "{error}");
        let error = read_config(Path::new("/dev/zero"), true)
            .unwrap_err()
            .to_string();
        assert!(error.contains("larger than 1 MiB"), "{error}");
        let file = dir.path().join("given.toml");
        std::fs::write(&file, "default_profile = \"read-only\"\n").unwrap();
        assert!(read_config(&file, false).is_ok());
    }

    /// Probe 118: `~/` was expanded in profiles' paths but not in
    /// `rules`, `skills` or `[audit] log`, where it made a directory named
    /// `~` beside the config file and kept the audit log there.
    #[test]
    fn a_home_path_is_the_home_directory_wherever_a_path_is_named() {
        let home = std::env::home_dir().unwrap();
        let path = Path::new("/etc/execgate/config.toml");
        let text = "rules = [\"~/team.rules\"]\nskills = [\"~/skills\"]\n\
                    [audit]\nlog = \"~/audit/a.jsonl\"\n";
        let config = Config::parse(text, path).unwrap();
        assert_eq!(config.rules, [home.join("team.rules")]);
        assert_eq!(config.skills, [home.join("skills")]);
        assert_eq!(config.audit.log, Some(home.join("audit/a.jsonl")));
        let error = format!(
            "{:#}",
            Config::parse("rules = [\"~root/a.rules\"]\n", path)
                .err()
                .unwrap()
        );
        assert!(
            error.contains("~root/a.rules") && error.contains("/etc/execgate"),
            "{error}"
        );
    }

    #[test]
    fn profiles_and_env_load() {
        let text = "default_profile = \"b\"\nrules = [\"a.rules\"]\n\
                    [profiles.b]\nextends = \"read-only\"\n\
                    [env]\ninherit = \"core\"\nset = { CI = \"1\" }\n\
                    [audit]\nkeep = 2\non_failure = \"warn\"\nsync = \"escalations\"\n";
        let config = Config::parse(text, Path::new("/x/config.toml")).unwrap();
        assert_eq!(config.default_profile.as_deref(), Some("b"));
        assert!(config.profiles.get("b").is_ok());
        assert_eq!(config.env.inherit, EnvInherit::Core);
        assert_eq!(config.env.set.get("CI").map(String::as_str), Some("1"));
        assert_eq!(config.rules, [PathBuf::from("/x/a.rules")]);
        assert_eq!(config.audit.keep, Some(2));
        assert!(config.audit.warn_on_failure);
        assert!(config.audit.sync_escalations);
    }

    /// The README's config examples are what users paste: each parses, and
    /// each profile it defines is one a session can take (probe 177: an
    /// inline table written over two lines was not TOML).
    #[test]
    fn the_readmes_config_examples_are_valid() {
        let readme = include_str!("../../README.md");
        let mut examples = Vec::new();
        let mut lines = readme.lines();
        while let Some(line) = lines.next() {
            if line.trim_start() != "```toml" {
                continue;
            }
            let indent = line.len() - line.trim_start().len();
            let block: Vec<&str> = lines
                .by_ref()
                .take_while(|line| line.trim_start() != "```")
                .map(|line| line.get(indent..).unwrap_or(""))
                .collect();
            examples.push(block.join("\n"));
        }
        assert!(examples.len() >= 2, "{examples:?}");
        for example in examples {
            let config = Config::parse(&example, Path::new("/README.md"))
                .unwrap_or_else(|error| panic!("{error:#}\n{example}"));
            for name in config.profiles.names() {
                config
                    .profile(name, None)
                    .unwrap_or_else(|error| panic!("{name}: {error:#}\n{example}"));
            }
        }
    }
}
