//! Windows paths as the planner sees them, on every host: a drive (`C:\`)
//! or a UNC share (`\\server\share\`) and normal components, compared the
//! way NTFS compares names (without regard to case).

use std::fmt;

use super::WindowsPlanError;

/// Where a Windows path starts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Volume {
    /// An upper-case drive letter.
    Drive(char),
    /// `\\server\share`, lower-cased for comparison.
    Share { server: String, share: String },
}

/// An absolute, lexically normal Windows path: `\`-separated, no `.` or
/// `..`, no trailing separator. `/` is accepted as a separator on input and
/// the `\\?\` prefix is removed. Equality and [`WinPath::starts_with`] ignore
/// case; [`WinPath::key`] is the form persisted in the state directory.
#[derive(Debug, Clone)]
pub struct WinPath {
    volume: Volume,
    /// As written (case kept for display and for the OS).
    components: Vec<String>,
}

impl WinPath {
    /// Parses an absolute Windows path; anything relative, drive-relative
    /// (`C:foo`, and `C:`, the drive's current directory) or rooted without
    /// a drive (`\foo`) is refused, because it would mean different places
    /// depending on the process's state.
    pub fn parse(text: &str) -> Result<WinPath, WindowsPlanError> {
        let refuse = |reason: &str| WindowsPlanError::BadPath {
            path: text.to_owned(),
            reason: reason.to_owned(),
        };
        if text.contains('\0') {
            return Err(refuse("it contains a NUL character"));
        }
        let unified = text.replace('/', "\\");
        let rest = unified
            .strip_prefix(r"\\?\UNC\")
            .map(|rest| format!(r"\\{rest}"))
            .or_else(|| unified.strip_prefix(r"\\?\").map(str::to_owned))
            .unwrap_or(unified);
        let (volume, tail) = if let Some(unc) = rest.strip_prefix(r"\\") {
            let mut parts = unc.splitn(3, '\\');
            let server = parts.next().unwrap_or_default();
            let share = parts.next().unwrap_or_default();
            if server.is_empty() || share.is_empty() || server == "." || server == "?" {
                return Err(refuse("a UNC path needs \\\\server\\share"));
            }
            (
                Volume::Share {
                    server: server.to_lowercase(),
                    share: share.to_lowercase(),
                },
                parts.next().unwrap_or_default().to_owned(),
            )
        } else {
            let mut chars = rest.chars();
            match (chars.next(), chars.next(), chars.next()) {
                (Some(letter), Some(':'), Some('\\')) if letter.is_ascii_alphabetic() => (
                    Volume::Drive(letter.to_ascii_uppercase()),
                    chars.as_str().to_owned(),
                ),
                _ => return Err(refuse("it is not an absolute path with a drive or a share")),
            }
        };
        let mut components: Vec<String> = Vec::new();
        for part in tail.split('\\') {
            match part {
                "" | "." => {}
                ".." => {
                    components.pop();
                }
                name => {
                    if name.contains([':', '*', '?', '"', '<', '>', '|']) {
                        return Err(refuse("a component holds a character Windows forbids"));
                    }
                    components.push(name.to_owned());
                }
            }
        }
        Ok(WinPath { volume, components })
    }

    /// `self\name`; `name` must be a single normal component.
    pub fn join(&self, name: &str) -> Result<WinPath, WindowsPlanError> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['\\', '/', ':']) {
            return Err(WindowsPlanError::BadPath {
                path: format!("{self}\\{name}"),
                reason: "not a single file name".to_owned(),
            });
        }
        let mut joined = self.clone();
        joined.components.push(name.to_owned());
        Ok(joined)
    }

    /// Whether `self` is `ancestor` or lies below it, component by
    /// component, compared as Windows opens them: without regard to case,
    /// and without the trailing dots and spaces that Win32 drops
    /// (`C:\ws\.git.\hooks` is below `C:\ws\.git`).
    pub fn starts_with(&self, ancestor: &WinPath) -> bool {
        self.volume == ancestor.volume
            && self.components.len() >= ancestor.components.len()
            && self
                .components
                .iter()
                .zip(&ancestor.components)
                .all(|(mine, theirs)| as_opened(mine) == as_opened(theirs))
    }

    /// Whether the path is on a share that names this machine's own
    /// folders by another name (a share of `localhost`, `127.0.0.1` or
    /// `::1`), or on a drive's administrative share (`\\server\c$`,
    /// `admin$`), a whole volume's root on whichever machine: checks made
    /// by name (the home, the state directory, protected names) would not
    /// know them. A share of this machine by its own name is not told.
    pub fn is_local_or_administrative_share(&self) -> bool {
        let Volume::Share { server, share } = &self.volume else {
            return false;
        };
        let local = server == "localhost"
            || server.starts_with("127.")
            || matches!(server.as_str(), "[::1]" | "::1" | "0--1.ipv6-literal.net");
        let administrative = share == "admin$"
            || (share.len() == 2
                && share.ends_with('$')
                && share.starts_with(|c: char| c.is_ascii_alphabetic()));
        local || administrative
    }

    /// How many components below the volume root: the specificity of a
    /// root.
    pub fn depth(&self) -> usize {
        self.components.len()
    }

    /// The comparison key: the path with every component case-folded.
    pub fn key(&self) -> String {
        let mut key = match &self.volume {
            Volume::Drive(letter) => format!("{letter}:"),
            Volume::Share { server, share } => format!(r"\\{server}\{share}"),
        };
        for component in &self.components {
            key.push('\\');
            key.push_str(&as_opened(component));
        }
        if self.components.is_empty() {
            key.push('\\');
        }
        key
    }

    /// Whether a component is `name`, compared as Windows opens it:
    /// without regard to case, and without the trailing dots and spaces
    /// that Win32 drops from a name (`.GIT.` opens `.git`).
    pub fn has_component(&self, name: &str) -> bool {
        self.components
            .iter()
            .any(|component| as_opened(component) == as_opened(name))
    }

    /// The directory holding `self`; `None` for a volume's root.
    pub fn parent(&self) -> Option<WinPath> {
        let mut parent = self.clone();
        parent.components.pop()?;
        Some(parent)
    }

    /// The last component, if any.
    pub fn file_name(&self) -> Option<&str> {
        self.components.last().map(String::as_str)
    }
}

/// A name as Win32 opens it: without its trailing dots and spaces, and
/// case-folded.
fn as_opened(name: &str) -> String {
    fold(name.trim_end_matches(['.', ' ']))
}

/// NTFS compares names through an upper-case table, one UTF-16 unit for
/// one: a character whose upper case is one character takes it (the
/// portable approximation of the table), one whose upper case is longer
/// (`ß`, `ﬀ`) stays as it is, as NTFS leaves it, and so does one beyond
/// the table's 16 bits (two units).
fn fold(name: &str) -> String {
    name.chars()
        .map(|c| {
            let mut upper = c.to_uppercase();
            match (upper.next(), upper.next()) {
                (Some(single), None) if c.len_utf16() == 1 && single.len_utf16() == 1 => single,
                _ => c,
            }
        })
        .collect()
}

impl PartialEq for WinPath {
    fn eq(&self, other: &WinPath) -> bool {
        self.key() == other.key()
    }
}

impl Eq for WinPath {}

impl PartialOrd for WinPath {
    fn partial_cmp(&self, other: &WinPath) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for WinPath {
    fn cmp(&self, other: &WinPath) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl fmt::Display for WinPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.volume {
            Volume::Drive(letter) => write!(f, "{letter}:")?,
            Volume::Share { server, share } => write!(f, r"\\{server}\{share}")?,
        }
        if self.components.is_empty() {
            return f.write_str("\\");
        }
        for component in &self.components {
            write!(f, "\\{component}")?;
        }
        Ok(())
    }
}
