//! Skills: directories with a `SKILL.md`, a `scripts/` folder and
//! optionally the permissions their scripts need.

use std::path::{Path, PathBuf};

use execgate_escalate_server::sandbox::{AdditionalPermissions, PermissionProfile};

/// The file a skill declares its permissions in.
pub const SKILL_PERMISSIONS_FILE: &str = "permissions.toml";

/// One registered skill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skill {
    /// From `SKILL.md`'s front matter (`name: ...`), else the directory's
    /// name.
    pub name: String,
    /// Canonical.
    pub root: PathBuf,
    /// Canonical: an exec whose resolved path lies below is this skill's
    /// script.
    pub scripts: PathBuf,
    /// What its scripts need beyond the session's profile; `None`: nothing.
    pub permissions: Option<PermissionProfile>,
    /// Why, as its permissions file says (`justification`): shown with
    /// every question about its scripts.
    pub justification: Option<String>,
    /// Its write grants that a link led elsewhere when it was registered:
    /// as written, and where they lead (what `permissions` grants).
    pub write_grants_through_links: Vec<(PathBuf, PathBuf)>,
}

/// Why a skill could not be registered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SkillError {
    #[error(
        "{}: not a skill directory (no SKILL.md in it or in its subdirectories); for no \
         skills, leave it out (SkillRegistry::default() in the library)",
        .0.display()
    )]
    NotASkill(PathBuf),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Permissions(#[from] execgate_escalate_server::sandbox::SandboxError),
    #[error(
        "{}: scripts/ is a symbolic link; a skill's scripts must be in the skill's own \
         directory (a link would make whatever it points to the skill's)",
        .0.display()
    )]
    LinkedScripts(PathBuf),
    #[error(
        "{}: its front matter declares permissions, which execgate does not read; \
         declare them in {SKILL_PERMISSIONS_FILE} beside it (README, \"For rule writers\") \
         and remove them from SKILL.md",
        .0.display()
    )]
    FrontMatterPermissions(PathBuf),
    #[error(
        "two skills are named {name}: {} and {}; questions and the audit log name a skill \
         by its name, so each must have its own (`name:` in SKILL.md)",
        .first.display(),
        .second.display()
    )]
    DuplicateName {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error(
        "skill {inner} lies inside skill {outer} ({}); whose grants its scripts get would \
         depend on the order the skills were named in: keep skills apart",
        .root.display()
    )]
    Nested {
        outer: String,
        inner: String,
        root: PathBuf,
    },
    #[error(
        "{}: not read, as it is not named {SKILL_PERMISSIONS_FILE} exactly; rename it, or \
         the skill's scripts would run without the permissions it declares",
        .0.display()
    )]
    MisnamedPermissions(PathBuf),
    #[error(
        "{}: its `name:` {why}, which execgate does not read as YAML would; write the \
         skill's name on one line of its own (`name: my-skill`)",
        .manifest.display()
    )]
    UnreadableName {
        manifest: PathBuf,
        why: &'static str,
    },
    #[error(
        "skill {skill} has a skill inside its scripts/ ({}): its scripts would run as \
         {skill}'s, with {skill}'s grants and questions, its own permissions unread; keep \
         skills apart",
        .inner.display()
    )]
    SkillInScripts { skill: String, inner: PathBuf },
    #[error(
        "skill {skill}: {} is a link to {}, outside its scripts/; a session decides on \
         where a link leads, so that would run without the skill's permissions: put the \
         script itself in scripts/",
        .link.display(),
        .target.display()
    )]
    ScriptLinksOut {
        skill: String,
        link: PathBuf,
        target: PathBuf,
    },
}

/// The skills of a session.
#[derive(Debug, Clone, Default)]
pub struct SkillRegistry {
    skills: Vec<Skill>,
}

impl SkillRegistry {
    /// Registers each directory: a skill itself (it has `SKILL.md`), or a
    /// directory whose subdirectories are skills.
    pub fn load<P: AsRef<Path>>(dirs: &[P]) -> Result<SkillRegistry, SkillError> {
        let mut registry = SkillRegistry::default();
        for dir in dirs {
            let dir = dir.as_ref();
            if dir.join("SKILL.md").is_file() {
                registry.add(Skill::load(dir)?)?;
                continue;
            }
            let entries = std::fs::read_dir(dir).map_err(|source| SkillError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
            let mut found = false;
            let mut children: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.join("SKILL.md").is_file())
                .collect();
            children.sort();
            for child in children {
                registry.add(Skill::load(&child)?)?;
                found = true;
            }
            if !found {
                return Err(SkillError::NotASkill(dir.to_path_buf()));
            }
        }
        Ok(registry)
    }

    /// Adds `skill`: once, when it is named twice (the same directory), and
    /// never beside another skill of the same name, which no question or
    /// record could tell from it.
    fn add(&mut self, skill: Skill) -> Result<(), SkillError> {
        let nested = self.skills.iter().find_map(|known| {
            let (outer, inner) = match () {
                _ if known.root == skill.root => return None,
                _ if skill.root.starts_with(&known.root) => (known, &skill),
                _ if known.root.starts_with(&skill.root) => (&skill, known),
                _ => return None,
            };
            Some(SkillError::Nested {
                outer: outer.name.clone(),
                inner: inner.name.clone(),
                root: inner.root.clone(),
            })
        });
        if let Some(nested) = nested {
            return Err(nested);
        }
        match self.skills.iter().find(|known| known.name == skill.name) {
            Some(known) if known.root == skill.root => Ok(()),
            Some(known) => Err(SkillError::DuplicateName {
                name: skill.name,
                first: known.root.clone(),
                second: skill.root,
            }),
            None => {
                self.skills.push(skill);
                Ok(())
            }
        }
    }

    pub fn skills(&self) -> &[Skill] {
        &self.skills
    }

    /// The skill whose `scripts/` holds `program` (a canonical path).
    pub fn owner_of(&self, program: &Path) -> Option<&Skill> {
        self.skills
            .iter()
            .find(|skill| program.starts_with(&skill.scripts) && program != skill.scripts)
    }
}

impl Skill {
    /// Reads one skill directory.
    pub fn load(dir: &Path) -> Result<Skill, SkillError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SkillError::Io { path, source }
        };
        let root = std::fs::canonicalize(dir).map_err(io(dir))?;
        let manifest = root.join("SKILL.md");
        let text = std::fs::read_to_string(&manifest).map_err(io(&manifest))?;
        let name = front_matter_name(&text)
            .map_err(|why| SkillError::UnreadableName {
                manifest: manifest.clone(),
                why,
            })?
            .or_else(|| {
                root.file_name()
                    .map(|name| name.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| root.display().to_string());
        if front_matter_declares_permissions(&text) {
            return Err(SkillError::FrontMatterPermissions(manifest));
        }
        let permissions_file = root.join(SKILL_PERMISSIONS_FILE);
        // Not a pass for what is not read: a dangling link (a probe's
        // skill then ran with no grants, unasked), or another spelling.
        let misnamed = std::fs::read_dir(&root)
            .map_err(io(&root))?
            .filter_map(Result::ok)
            .map(|entry| entry.file_name())
            .find(|name| {
                name.to_str().is_some_and(|name| {
                    name != SKILL_PERMISSIONS_FILE
                        && name.eq_ignore_ascii_case(SKILL_PERMISSIONS_FILE)
                })
            });
        if let Some(misnamed) = misnamed {
            return Err(SkillError::MisnamedPermissions(root.join(misnamed)));
        }
        let (permissions, justification, write_grants_through_links) =
            if std::fs::symlink_metadata(&permissions_file).is_ok() {
                let declared = AdditionalPermissions::load(&permissions_file)?;
                (
                    Some(declared.profile),
                    declared.justification,
                    declared.write_grants_through_links,
                )
            } else {
                (None, None, Vec::new())
            };
        let scripts = root.join("scripts");
        if std::fs::symlink_metadata(&scripts).is_ok_and(|meta| meta.is_symlink()) {
            return Err(SkillError::LinkedScripts(root));
        }
        let nested = first_below(&scripts, |path, _| {
            (path.file_name() == Some(std::ffi::OsStr::new("SKILL.md")))
                .then(|| path.parent().unwrap_or(path).to_path_buf())
        });
        match nested {
            Ok(Some(inner)) => return Err(SkillError::SkillInScripts { skill: name, inner }),
            Ok(None) => {}
            // A skill with grants must be read whole (its scripts get
            // them); one without gives its scripts nothing to widen.
            Err(error) if permissions.is_some() => return Err(io(&scripts)(error)),
            Err(_) => {}
        }
        if permissions.is_some() {
            if let Some((link, target)) = link_out_of(&scripts).map_err(io(&scripts))? {
                return Err(SkillError::ScriptLinksOut {
                    skill: name,
                    link: link.strip_prefix(&root).unwrap_or(&link).to_path_buf(),
                    target,
                });
            }
        }
        Ok(Skill {
            name,
            scripts,
            root,
            permissions,
            justification,
            write_grants_through_links,
        })
    }
}

/// The first link below `scripts` (not followed) that leads out of it,
/// with where it leads; a dangling link leads nowhere a session could run.
/// Only for a skill with grants: its scripts are what get them.
fn link_out_of(scripts: &Path) -> std::io::Result<Option<(PathBuf, PathBuf)>> {
    first_below(scripts, |path, kind| {
        let target = std::fs::canonicalize(path).ok()?;
        (kind.is_symlink() && !target.starts_with(scripts)).then(|| (path.to_path_buf(), target))
    })
}

/// What `found` first gives for an entry below `dir` (links not followed;
/// none when `dir` is missing).
fn first_below<T>(
    dir: &Path,
    found: impl Fn(&Path, std::fs::FileType) -> Option<T>,
) -> std::io::Result<Option<T>> {
    let mut directories = vec![dir.to_path_buf()];
    while let Some(directory) = directories.pop() {
        let entries = match std::fs::read_dir(&directory) {
            Ok(entries) => entries,
            // Nothing below: no `scripts`, or a file of that name.
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                continue
            }
            Err(error) => return Err(error),
        };
        for entry in entries {
            let entry = entry?;
            let (path, kind) = (entry.path(), entry.file_type()?);
            if let Some(found) = found(&path, kind) {
                return Ok(Some(found));
            }
            if kind.is_dir() {
                directories.push(path);
            }
        }
    }
    Ok(None)
}

/// The lines of a `---`-delimited front matter (none without one).
fn front_matter(text: &str) -> impl Iterator<Item = &str> {
    let mut lines = text.trim_start_matches('\u{feff}').lines();
    let opened = lines.next().is_some_and(|line| line.trim() == "---");
    lines
        .take_while(|line| line.trim() != "---")
        .filter(move |_| opened)
}

/// `name:` in the front matter, when a line of its own gives it plainly;
/// why not, when YAML would read it otherwise (over several lines, given
/// twice, empty). A key indented under another is not the skill's.
fn front_matter_name(text: &str) -> Result<Option<String>, &'static str> {
    // Probe 137: YAML reads a front matter whose keys are all indented, or
    // one flow mapping (`{name: x, permissions: ...}`), as the skill's own
    // keys; read line by line, its name and permissions were not seen.
    let first = front_matter(text)
        .find(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'));
    match first {
        Some(line) if line.starts_with(char::is_whitespace) => {
            return Err("cannot be read: the front matter's keys are indented");
        }
        Some(line) if line.starts_with(['{', '[']) => {
            return Err("cannot be read: the front matter is written in flow style ({...})");
        }
        _ => {}
    }
    let mut names = front_matter(text).filter_map(|line| {
        let (key, value) = line.split_once(':')?;
        let key = key.trim_end().trim_matches(['"', '\'']);
        (key == "name" && !line.starts_with(char::is_whitespace)).then_some(value.trim())
    });
    let Some(value) = names.next() else {
        return Ok(None);
    };
    if names.next().is_some() {
        return Err("is given more than once");
    }
    if value.starts_with(['>', '|']) {
        return Err("is written over several lines");
    }
    let (name, rest) = match value.chars().next() {
        Some('"') => {
            let inner = &value[1..];
            let end = inner.find('"').ok_or("has no closing quote")?;
            if inner[..end].contains('\\') {
                return Err("uses escapes in its quotes");
            }
            (inner[..end].to_owned(), &inner[end + 1..])
        }
        // YAML's single quotes: `''` is one quote.
        Some('\'') => {
            let mut name = String::new();
            let mut chars = value[1..].char_indices().peekable();
            let end = loop {
                match chars.next() {
                    Some((_, '\'')) if chars.peek().map(|(_, c)| *c) == Some('\'') => {
                        chars.next();
                        name.push('\'');
                    }
                    Some((at, '\'')) => break 1 + at + 1,
                    Some((_, c)) => name.push(c),
                    None => return Err("has no closing quote"),
                }
            };
            (name, &value[end..])
        }
        Some('[' | '{' | '&' | '*' | '!' | '@' | '`' | '%') => {
            return Err("starts with a character YAML reads as more than text")
        }
        _ => {
            // A comment after it is YAML's, not the name's.
            let plain = value.split(" #").next().unwrap_or(value).trim_end();
            if plain.contains(": ") || plain.ends_with(':') {
                return Err("holds `: `, which YAML reads as a mapping");
            }
            (plain.to_owned(), "")
        }
    };
    let rest = rest.trim_start();
    if !rest.is_empty() && !rest.starts_with('#') {
        return Err("has text after its closing quote");
    }
    match name.is_empty() {
        true => Err("is empty"),
        false => Ok(Some(name)),
    }
}

/// Whether the front matter has a `permissions` key of its own, which some
/// skill formats read and execgate does not.
fn front_matter_declares_permissions(text: &str) -> bool {
    front_matter(text).any(|line| {
        ["permissions", "\"permissions\"", "'permissions'"]
            .iter()
            .any(|key| {
                line.strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with(':'))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skills_load_with_and_without_permissions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = dir.path().join("plain");
        let granted = dir.path().join("granted");
        for skill in [&plain, &granted] {
            std::fs::create_dir_all(skill.join("scripts")).expect("mkdir");
        }
        std::fs::write(plain.join("SKILL.md"), "# Plain\n").expect("write");
        std::fs::write(granted.join("SKILL.md"), "---\nname: release-notes\n---\n").expect("write");
        std::fs::write(
            granted.join(SKILL_PERMISSIONS_FILE),
            "justification = \"writes the release notes\"\n\
             filesystem = { \"../notes\" = \"write\" }\n",
        )
        .expect("write");
        let registry = SkillRegistry::load(&[dir.path()]).expect("load");
        assert_eq!(
            registry.skills()[0].justification.as_deref(),
            Some("writes the release notes")
        );
        let names: Vec<&str> = registry.skills().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["release-notes", "plain"]);
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        let owner = registry.owner_of(&root.join("plain/scripts/run.sh"));
        assert_eq!(owner.map(|skill| skill.name.as_str()), Some("plain"));
        assert_eq!(owner.and_then(|skill| skill.permissions.clone()), None);
        assert!(registry.owner_of(&root.join("plain/SKILL.md")).is_none());
        let grants = registry.skills()[0]
            .permissions
            .as_ref()
            .map(PermissionProfile::grants)
            .unwrap_or_default();
        assert_eq!(
            grants,
            [
                format!("{}=write", root.join("notes").display()),
                "network=restricted".to_owned()
            ]
        );
        assert!(matches!(
            SkillRegistry::load(&[plain.join("scripts")]),
            Err(SkillError::NotASkill(_))
        ));
    }

    /// From a probe: a skill inside another's `scripts/` got the outer
    /// skill's grants or its own, by the order they were named in; a
    /// dangling or misspelt permissions file loaded the skill with none.
    #[test]
    fn nested_skills_and_unread_permissions_do_not_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let skill = |path: &Path, name: &str| {
            std::fs::create_dir_all(path.join("scripts")).expect("mkdir");
            std::fs::write(path.join("SKILL.md"), format!("---\nname: {name}\n---\n"))
                .expect("write");
        };
        let outer = dir.path().join("outer");
        let inner = outer.join("scripts/inner");
        skill(&outer, "outer");
        skill(&inner, "inner");
        for order in [[&outer, &inner], [&inner, &outer]] {
            assert!(
                matches!(
                    SkillRegistry::load(&order),
                    Err(SkillError::Nested { .. } | SkillError::SkillInScripts { .. })
                ),
                "{order:?}"
            );
        }
        let dangling = dir.path().join("dangling");
        skill(&dangling, "dangling");
        std::os::unix::fs::symlink("/nonexistent", dangling.join(SKILL_PERMISSIONS_FILE))
            .expect("symlink");
        assert!(matches!(
            SkillRegistry::load(&[&dangling]),
            Err(SkillError::Permissions(_) | SkillError::Io { .. })
        ));
        let misspelt = dir.path().join("misspelt");
        skill(&misspelt, "misspelt");
        std::fs::write(misspelt.join("Permissions.toml"), "").expect("write");
        assert!(matches!(
            SkillRegistry::load(&[&misspelt]),
            Err(SkillError::MisnamedPermissions(_))
        ));
    }

    /// From a probe: two skills named alike both loaded, and no question
    /// or record could tell which one's script ran. The same directory
    /// named twice is one skill.
    #[test]
    fn two_skills_of_one_name_do_not_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (directory, name) in [("a", "same"), ("b", "same"), ("c", "other")] {
            let skill = dir.path().join(directory);
            std::fs::create_dir_all(skill.join("scripts")).expect("mkdir");
            std::fs::write(skill.join("SKILL.md"), format!("---\nname: {name}\n---\n"))
                .expect("write");
        }
        let error = SkillRegistry::load(&[dir.path()]).expect_err("loaded");
        assert!(
            matches!(&error, SkillError::DuplicateName { name, .. } if name == "same"),
            "{error}"
        );
        let c = dir.path().join("c");
        let once = SkillRegistry::load(&[&c, &c]).expect("load");
        assert_eq!(once.skills().len(), 1);
    }

    /// Regression: a skill whose `scripts/` was a link loaded, and its
    /// scripts (found under the link's target) were silently no skill's:
    /// they ran in place, without the grants or the question.
    #[cfg(unix)]
    #[test]
    fn a_skill_whose_scripts_are_a_link_does_not_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let skill = dir.path().join("linked");
        std::fs::create_dir_all(dir.path().join("elsewhere")).expect("mkdir");
        std::fs::create_dir_all(&skill).expect("mkdir");
        std::fs::write(skill.join("SKILL.md"), "# Linked\n").expect("write");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), skill.join("scripts"))
            .expect("symlink");
        let error = SkillRegistry::load(&[&skill]).expect_err("loaded");
        assert!(matches!(error, SkillError::LinkedScripts(_)), "{error}");
        assert!(error.to_string().contains("scripts/ is a symbolic link"));
    }

    /// A probe (106): a script in a skill's `scripts/` that was a link to
    /// a file elsewhere loaded, and ran in place without the skill's grants
    /// or its question: a session decides on the resolved path, which is
    /// no skill's. A skill with permissions does not load so; a link that
    /// stays inside `scripts/`, or one in a skill without grants (it runs
    /// in place either way), does.
    #[cfg(unix)]
    #[test]
    fn a_skill_with_grants_whose_script_links_out_does_not_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(elsewhere.join("lib")).expect("mkdir");
        std::fs::write(elsewhere.join("run.sh"), "#!/bin/sh\n").expect("write");
        let skill = |name: &str, granted: bool| {
            let root = dir.path().join(name);
            std::fs::create_dir_all(root.join("scripts/sub")).expect("mkdir");
            std::fs::write(root.join("SKILL.md"), format!("---\nname: {name}\n---\n"))
                .expect("write");
            std::fs::write(root.join("scripts/own.sh"), "#!/bin/sh\n").expect("write");
            std::os::unix::fs::symlink("../own.sh", root.join("scripts/sub/inside.sh"))
                .expect("symlink");
            if granted {
                std::fs::write(
                    root.join(SKILL_PERMISSIONS_FILE),
                    "filesystem = { \"../notes\" = \"write\" }\n",
                )
                .expect("write");
            }
            root
        };
        let inside_only = skill("inside-only", true);
        SkillRegistry::load(&[&inside_only]).expect("a link inside scripts/ loads");
        for (name, target, link) in [
            ("file-out", elsewhere.join("run.sh"), "scripts/sub/run.sh"),
            ("dir-out", elsewhere.join("lib"), "scripts/lib"),
        ] {
            let granted = skill(name, true);
            std::os::unix::fs::symlink(&target, granted.join(link)).expect("symlink");
            let error = SkillRegistry::load(&[&granted]).expect_err("loaded");
            assert!(
                matches!(&error, SkillError::ScriptLinksOut { .. }),
                "{name}: {error}"
            );
            let message = error.to_string();
            assert!(message.contains(link), "{message}");
            assert!(
                message.contains("without the skill's permissions"),
                "{message}"
            );
            let plain = skill(&format!("{name}-plain"), false);
            std::os::unix::fs::symlink(&target, plain.join(link)).expect("symlink");
            SkillRegistry::load(&[&plain]).expect("a skill without grants loads");
        }
    }

    /// Permissions written in `SKILL.md`'s front matter (a format some
    /// agents read) are refused, not silently dropped: the skill would run
    /// with less than its author declared, or with nothing to approve.
    #[test]
    fn permissions_in_the_front_matter_are_refused() {
        let cases = [
            (
                "---\nname: n\npermissions:\n  network: enabled\n---\n",
                true,
            ),
            ("---\npermissions : {}\n---\n", true),
            ("\u{feff}---\npermissions: {}\n---\n", true),
            ("---\n\"permissions\": {}\n---\n", true),
            ("---\n'permissions': {}\n---\n", true),
            (
                "---\nname: n\n---\npermissions: in the body, not the front matter\n",
                false,
            ),
            ("permissions: no front matter\n", false),
            ("---\npermissions_note: a key of another name\n---\n", false),
            ("---\n  permissions: nested under another key\n---\n", false),
        ];
        for (text, refused) in cases {
            assert_eq!(front_matter_declares_permissions(text), refused, "{text:?}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("scripts")).expect("mkdir");
        std::fs::write(dir.path().join("SKILL.md"), cases[0].0).expect("write");
        let error = SkillRegistry::load(&[dir.path()]).expect_err("loaded");
        assert!(
            matches!(error, SkillError::FrontMatterPermissions(_)),
            "{error}"
        );
        assert!(error.to_string().contains("permissions.toml"), "{error}");
    }

    /// Probe 128: `name:` was read line by line, not as YAML reads it: a
    /// name written over several lines (`name: >-`) was taken as `>-`,
    /// `name : x` was passed over (the directory's name then), and of two
    /// `name:` lines the first counted where YAML takes the last or
    /// refuses. What a plain line gives is read; the rest is refused.
    #[test]
    fn a_name_the_front_matter_does_not_give_plainly_is_refused() {
        let cases: [(&str, Result<Option<&str>, ()>); 20] = [
            ("---\nname: notes\n---\n", Ok(Some("notes"))),
            ("---\nname: \"notes\"\n---\n", Ok(Some("notes"))),
            // Review 132: what follows a quoted name, YAML's own quoting,
            // and what YAML reads as more than a name.
            ("---\nname: \"c\" # the c skill\n---\n", Ok(Some("c"))),
            ("---\nname: c # the c skill\n---\n", Ok(Some("c"))),
            ("---\nname: 'it''s'\n---\n", Ok(Some("it's"))),
            ("---\nname: \"a\\tb\"\n---\n", Err(())),
            ("---\nname: \"c\" d\n---\n", Err(())),
            ("---\nname: d: e\n---\n", Err(())),
            ("---\nname: [a, b]\n---\n", Err(())),
            ("---\nname : notes\n---\n", Ok(Some("notes"))),
            ("---\ntitle: t\n  name: nested\n---\n", Ok(None)),
            ("# no front matter\nname: body\n", Ok(None)),
            ("---\nname: >-\n  notes\n---\n", Err(())),
            ("---\nname: |\n  notes\n---\n", Err(())),
            ("---\nname: a\nname: b\n---\n", Err(())),
            ("---\nname:\n---\n", Err(())),
            // Probe 137: what YAML reads as the skill's keys, and execgate
            // did not see.
            (
                "---\n  name: release-notes\n  permissions:\n    network: x\n---\n",
                Err(()),
            ),
            ("---\n# notes\n\n  name: indented\n---\n", Err(())),
            (
                "---\n{name: deploy, permissions: {network: enabled}}\n---\n",
                Err(()),
            ),
            (
                "---\n# a comment first\nname: fine\n---\n",
                Ok(Some("fine")),
            ),
        ];
        for (text, expected) in cases {
            let read = front_matter_name(text);
            assert_eq!(
                read.as_ref().map(|name| name.as_deref()).map_err(|_| ()),
                expected,
                "{text:?}"
            );
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("scripts")).expect("mkdir");
        std::fs::write(dir.path().join("SKILL.md"), cases[5].0).expect("write");
        let error = SkillRegistry::load(&[dir.path()]).expect_err("loaded");
        assert!(error.to_string().contains("name"), "{error}");
    }

    /// Probe 128: a skill inside another's `scripts/` ran as the outer
    /// skill's script, with the outer's grants and questions, its own
    /// `permissions.toml` unread, and nothing said so. Refused, as two
    /// nested skills named together are.
    #[test]
    fn a_skill_inside_anothers_scripts_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outer = dir.path().join("outer");
        let inner = outer.join("scripts").join("tools").join("inner");
        std::fs::create_dir_all(inner.join("scripts")).expect("mkdir");
        std::fs::write(outer.join("SKILL.md"), "---\nname: outer\n---\n").expect("write");
        std::fs::write(inner.join("SKILL.md"), "---\nname: inner\n---\n").expect("write");
        let error = SkillRegistry::load(&[&outer]).expect_err("loaded");
        assert!(
            matches!(error, SkillError::SkillInScripts { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("inner"), "{error}");
        // Review 132: the walk made a skill whose `scripts` is a file (no
        // scripts at all) fail to load.
        let plain = dir.path().join("plain");
        std::fs::create_dir_all(&plain).expect("mkdir");
        std::fs::write(plain.join("SKILL.md"), "---\nname: plain\n---\n").expect("write");
        std::fs::write(plain.join("scripts"), "not a directory\n").expect("write");
        SkillRegistry::load(&[&plain]).expect("a skill whose scripts is a file loads");
    }
}
