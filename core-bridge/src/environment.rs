//! The exec environment policy: which variables a session's shell starts
//! with.

use std::collections::BTreeMap;
use std::ffi::OsString;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::BridgeError;

/// Where the environment starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EnvInherit {
    /// Everything the caller has.
    #[default]
    All,
    /// Only [`CORE_VARIABLES`].
    Core,
    /// Nothing.
    None,
}

/// The variables `EnvInherit::Core` keeps.
pub const CORE_VARIABLES: [&str; 11] = [
    "HOME", "PATH", "USER", "LOGNAME", "SHELL", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE", "TERM",
    "TZ",
];

/// Names dropped unless a policy says otherwise: anything that looks like a
/// credential. The endings are the conventions that name none of the words
/// above (`MYSQL_PWD`, `SMTP_PASS`, `GITHUB_PAT`, `SENTRY_DSN`); a database
/// URL usually holds its password. `PWD` and `OLDPWD`, the shell's own, are
/// no credentials and are kept.
pub const DEFAULT_EXCLUDES: [&str; 12] = [
    "*KEY*",
    "*SECRET*",
    "*TOKEN*",
    "*PASSWORD*",
    "*CREDENTIAL*",
    "*AUTH*",
    "*PASSWD*",
    "*_PWD",
    "*_PASS",
    "*_PAT",
    "*_DSN",
    "*DATABASE_URL",
];

/// Builds an environment in this order: start from [`EnvInherit`], drop
/// names matching `exclude`, add `set`, keep only names matching
/// `include_only` (when it is not empty). The session's own variables go on
/// top afterwards. Patterns are globs on names, case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvPolicy {
    pub inherit: EnvInherit,
    pub exclude: Vec<String>,
    pub set: BTreeMap<String, String>,
    pub include_only: Vec<String>,
}

impl Default for EnvPolicy {
    fn default() -> Self {
        EnvPolicy {
            inherit: EnvInherit::All,
            exclude: DEFAULT_EXCLUDES.iter().map(|s| (*s).to_owned()).collect(),
            set: BTreeMap::new(),
            include_only: Vec::new(),
        }
    }
}

impl EnvPolicy {
    /// The environment this policy makes of `from`.
    pub fn build(
        &self,
        from: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Vec<(OsString, OsString)>, BridgeError> {
        self.check_set()?;
        let exclude = name_patterns(&self.exclude)?;
        let include_only = name_patterns(&self.include_only)?;
        let mut env: BTreeMap<OsString, OsString> = from
            .into_iter()
            .filter(|(name, _)| match self.inherit {
                EnvInherit::All => true,
                EnvInherit::Core => CORE_VARIABLES.iter().any(|core| name == *core),
                EnvInherit::None => false,
            })
            .filter(|(name, _)| !exclude.is_match(name.to_string_lossy().as_ref()))
            .collect();
        if !self.include_only.is_empty() {
            env.retain(|name, _| include_only.is_match(name.to_string_lossy().as_ref()));
        }
        // What it sets is its own choice, over `include_only` as over
        // `exclude` (probe 203: `include_only` dropped it unsaid).
        for (name, value) in &self.set {
            env.insert(name.into(), value.into());
        }
        Ok(env.into_iter().collect())
    }

    /// Refuses what [`EnvPolicy::build`] would: a pattern that does not
    /// compile, a name to set that no environment can hold. For a
    /// configuration, as it loads.
    pub fn check(&self) -> Result<(), BridgeError> {
        self.check_set()?;
        name_patterns(&self.exclude)?;
        name_patterns(&self.include_only)?;
        Ok(())
    }

    /// A name to set must be one (not empty, no `=`), and neither it nor
    /// its value may hold a NUL byte (probe 203: `"A=B" = "x"` set `A` to
    /// `B=x`; a NUL was refused only as the shell started).
    fn check_set(&self) -> Result<(), BridgeError> {
        for (name, value) in &self.set {
            let reason = if name.is_empty() {
                "an empty name"
            } else if name.contains('=') {
                "a name cannot hold '='"
            } else if name.contains('\0') || value.contains('\0') {
                "a NUL byte"
            } else {
                continue;
            };
            return Err(BridgeError::EnvSet {
                name: name.clone(),
                reason,
            });
        }
        Ok(())
    }

    /// The names of `from` that [`DEFAULT_EXCLUDES`] would drop and this
    /// policy passes on unchosen: what a list of its own in `exclude` lets
    /// through. A name it sets itself is its own choice, and so is one an
    /// `include_only` pattern names (`AWS_*`, `GH_TOKEN`); one that passes
    /// only by a pattern naming nothing (`*`, `*_*`, `[A-Z]*`) is not.
    pub fn credentials_passed(
        &self,
        from: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Vec<OsString>, BridgeError> {
        let credential = name_patterns(&DEFAULT_EXCLUDES.map(str::to_owned))?;
        let naming: Vec<String> = self
            .include_only
            .iter()
            .filter(|pattern| names_something(pattern))
            .cloned()
            .collect();
        let chosen = name_patterns(&naming)?;
        Ok(self
            .build(from)?
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| !self.set.keys().any(|set| name == set.as_str()))
            .filter(|name| credential.is_match(name.to_string_lossy().as_ref()))
            .filter(|name| !chosen.is_match(name.to_string_lossy().as_ref()))
            .collect())
    }
}

/// Whether a name pattern spells part of a name: two or more characters
/// in a row that stand for themselves, outside a `[...]` class. `AWS_*`
/// does; `*`, `?*`, `*_*` and `[A-Z]*` match whatever is there.
fn names_something(pattern: &str) -> bool {
    let mut run = 0;
    let mut in_class = false;
    let mut escaped = false;
    for c in pattern.chars() {
        let literal = if escaped {
            escaped = false;
            !in_class
        } else if in_class {
            in_class = c != ']';
            false
        } else {
            match c {
                '\\' => {
                    escaped = true;
                    continue;
                }
                '[' => {
                    in_class = true;
                    false
                }
                '*' | '?' | '{' | '}' | ',' => false,
                _ => true,
            }
        };
        run = if literal { run + 1 } else { 0 };
        if run >= 2 {
            return true;
        }
    }
    false
}

fn name_patterns(patterns: &[String]) -> Result<GlobSet, BridgeError> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = GlobBuilder::new(pattern)
            .case_insensitive(true)
            .build()
            .map_err(|error| BridgeError::EnvPattern {
                pattern: pattern.clone(),
                reason: error.to_string(),
            })?;
        builder.add(glob);
    }
    builder.build().map_err(|error| BridgeError::EnvPattern {
        pattern: patterns.join(", "),
        reason: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Vec<(OsString, OsString)> {
        [
            ("HOME", "/home/a"),
            ("PATH", "/usr/bin"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("github_token", "t"),
            ("DB_PASSWORD", "p"),
            ("EDITOR", "vi"),
            ("LANG", "C.UTF-8"),
        ]
        .into_iter()
        .map(|(n, v)| (n.into(), v.into()))
        .collect()
    }

    fn names(env: &[(OsString, OsString)]) -> Vec<String> {
        env.iter()
            .map(|(n, _)| n.to_string_lossy().into_owned())
            .collect()
    }

    /// A probe: `MYSQL_PWD` and `GITHUB_PAT` reached every command, no
    /// word of the list in their names.
    #[test]
    fn the_default_drops_credentials_by_their_usual_names_only() {
        let dropped = [
            "MYSQL_PWD",
            "SMTP_PASS",
            "GITHUB_PAT",
            "SENTRY_DSN",
            "DATABASE_URL",
            "TEST_DATABASE_URL",
            "npm_config__auth",
            "PGPASSWORD",
        ];
        let kept = [
            "PWD",
            "OLDPWD",
            "PASSENGER",
            "PATH",
            "PATCH_LEVEL",
            "DSN_HOST",
        ];
        let from = dropped
            .iter()
            .chain(&kept)
            .map(|name| (OsString::from(name), OsString::from("v")));
        let env = EnvPolicy::default().build(from).unwrap();
        let mut expected = kept.to_vec();
        expected.sort_unstable();
        assert_eq!(names(&env), expected);
    }

    #[test]
    fn each_step_in_order() {
        // (policy, names expected)
        let cases: Vec<(EnvPolicy, Vec<&str>)> = vec![
            (EnvPolicy::default(), vec!["EDITOR", "HOME", "LANG", "PATH"]),
            (
                EnvPolicy {
                    inherit: EnvInherit::Core,
                    ..EnvPolicy::default()
                },
                vec!["HOME", "LANG", "PATH"],
            ),
            (
                EnvPolicy {
                    inherit: EnvInherit::None,
                    set: [("MODE".to_owned(), "ci".to_owned())].into(),
                    ..EnvPolicy::default()
                },
                vec!["MODE"],
            ),
            (
                EnvPolicy {
                    exclude: vec![],
                    include_only: vec!["*PATH*".into(), "db_*".into()],
                    ..EnvPolicy::default()
                },
                vec!["DB_PASSWORD", "PATH"],
            ),
            (
                // `set` wins over `exclude`: it is an explicit choice.
                EnvPolicy {
                    set: [("API_TOKEN".to_owned(), "given".to_owned())].into(),
                    ..EnvPolicy::default()
                },
                vec!["API_TOKEN", "EDITOR", "HOME", "LANG", "PATH"],
            ),
            (
                // And over `include_only` (probe 203: dropped unsaid).
                EnvPolicy {
                    set: [("CI".to_owned(), "1".to_owned())].into(),
                    include_only: vec!["PATH".into(), "HOME".into()],
                    ..EnvPolicy::default()
                },
                vec!["CI", "HOME", "PATH"],
            ),
        ];
        for (policy, expected) in cases {
            assert_eq!(
                names(&policy.build(caller()).unwrap()),
                expected,
                "{policy:?}"
            );
        }
    }

    #[test]
    fn credentials_passed_by_a_list_of_its_own() {
        // (exclude, set, include_only, names expected)
        #[allow(clippy::type_complexity)]
        let cases: Vec<(Vec<&str>, Vec<&str>, Vec<&str>, Vec<&str>)> = vec![
            (DEFAULT_EXCLUDES.to_vec(), vec![], vec![], vec![]),
            (
                vec!["*TOKEN*"],
                vec![],
                vec![],
                vec!["AWS_SECRET_ACCESS_KEY", "DB_PASSWORD"],
            ),
            (
                vec!["*TOKEN*"],
                vec!["DB_PASSWORD"],
                vec![],
                vec!["AWS_SECRET_ACCESS_KEY"],
            ),
            (
                vec![],
                vec![],
                vec![],
                vec!["AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "github_token"],
            ),
            // include_only: a pattern that names the variable chooses it;
            // one that matches anything does not (a review).
            (vec![], vec![], vec!["PATH", "AWS_*", "db_password"], vec![]),
            (
                vec![],
                vec![],
                vec!["*"],
                vec!["AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "github_token"],
            ),
            (
                vec![],
                vec![],
                vec!["*_*", "[a-z]*", "AWS_*"],
                vec!["DB_PASSWORD", "github_token"],
            ),
            (vec![], vec![], vec!["*TOKEN*", "?B*"], vec!["DB_PASSWORD"]),
            (vec!["*TOKEN*"], vec![], vec!["\\A*", "{AWS,GH}_*"], vec![]),
        ];
        for (exclude, set, include_only, expected) in cases {
            let policy = EnvPolicy {
                exclude: exclude.iter().map(|s| (*s).to_owned()).collect(),
                set: set
                    .iter()
                    .map(|s| ((*s).to_owned(), "x".to_owned()))
                    .collect(),
                include_only: include_only.iter().map(|s| (*s).to_owned()).collect(),
                ..EnvPolicy::default()
            };
            let passed = policy.credentials_passed(caller()).unwrap();
            let passed: Vec<_> = passed.iter().map(|n| n.to_string_lossy()).collect();
            assert_eq!(passed, expected, "{policy:?}");
        }
    }

    #[test]
    fn bad_patterns_are_named() {
        let policy = EnvPolicy {
            exclude: vec!["[".into()],
            ..EnvPolicy::default()
        };
        let error = policy.build(caller()).unwrap_err().to_string();
        assert!(error.contains("\"[\""), "{error}");
    }
}
