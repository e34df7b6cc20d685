//! Other names the host's mounts give the same files. A bind mount shows a
//! directory's files under a second path, and a check made by path ("could
//! the sandbox have written this?") must know both: the sandbox writes
//! through the one its profile names, and a program outside may read
//! through the other.
//!
//! Read from `/proc/self/mountinfo`, whose lines say for each mount which
//! file system it shows (its device number), from which directory of it
//! (its root) and where. Two places are the same files when they are the
//! same directory of the same file system. Mounts made after the snapshot
//! are not known.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where else the host shows a set of places, as pairs of (another name, the
/// place it is the same files as).
#[derive(Debug, Clone, Default)]
pub struct MountAliases {
    names: Vec<(PathBuf, PathBuf)>,
}

/// One mount, as `/proc/self/mountinfo` gives it.
struct Mount {
    device: String,
    root: PathBuf,
    point: PathBuf,
}

impl MountAliases {
    /// The other names of `places` (absolute and canonical) and of what is
    /// in them, as the mounts of this process show them now. Unreadable
    /// mounts give none.
    pub fn of(places: &[PathBuf]) -> MountAliases {
        if places.is_empty() {
            return MountAliases::default();
        }
        match std::fs::read("/proc/self/mountinfo") {
            Ok(text) => MountAliases::from_mountinfo(&text, places),
            Err(_) => MountAliases::default(),
        }
    }

    fn from_mountinfo(text: &[u8], places: &[PathBuf]) -> MountAliases {
        let mounts: Vec<Mount> = text
            .split(|&byte| byte == b'\n')
            .filter_map(parse)
            .collect();
        let mut names = Vec::new();
        for place in places {
            // The mount that shows `place`: the deepest one over it, the
            // last of those stacked at one point.
            let Some(own) = mounts
                .iter()
                .filter(|mount| place.starts_with(&mount.point))
                .max_by_key(|mount| mount.point.components().count())
            else {
                continue;
            };
            let Ok(inside) = place.strip_prefix(&own.point) else {
                continue;
            };
            // `place` as a directory of its file system.
            let within = own.root.join(inside);
            for mount in mounts.iter().filter(|mount| mount.device == own.device) {
                let alias = if let Ok(below) = within.strip_prefix(&mount.root) {
                    // This mount shows a directory holding `place`.
                    (join_below(&mount.point, below), place.clone())
                } else if let Ok(below) = mount.root.strip_prefix(&within) {
                    // This mount shows a directory inside `place`.
                    (mount.point.clone(), join_below(place, below))
                } else {
                    continue;
                };
                if alias.0 != alias.1 && !names.contains(&alias) {
                    names.push(alias);
                }
            }
        }
        MountAliases { names }
    }

    /// `path` by each other name the mounts give it (never `path` itself).
    pub fn other_names<'a>(&'a self, path: &'a Path) -> impl Iterator<Item = PathBuf> + 'a {
        self.names.iter().filter_map(move |(alias, original)| {
            let below = path.strip_prefix(alias).ok()?;
            Some(join_below(original, below))
        })
    }

    /// The other names themselves.
    pub fn aliases(&self) -> impl Iterator<Item = &Path> {
        self.names.iter().map(|(alias, _)| alias.as_path())
    }
}

/// `base` joined with `below`, which is relative (an empty one is `base`).
fn join_below(base: &Path, below: &Path) -> PathBuf {
    if below.as_os_str().is_empty() {
        base.to_path_buf()
    } else {
        base.join(below)
    }
}

/// A mountinfo line: `ID PARENT MAJOR:MINOR ROOT POINT ...`.
fn parse(line: &[u8]) -> Option<Mount> {
    let mut fields = line.split(|&byte| byte == b' ');
    let device = fields.nth(2)?;
    let root = fields.next()?;
    let point = fields.next()?;
    Some(Mount {
        device: String::from_utf8_lossy(device).into_owned(),
        root: path_of(&unescape_mount_field(root)),
        point: path_of(&unescape_mount_field(point)),
    })
}

fn path_of(bytes: &[u8]) -> PathBuf {
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

/// A path as `/proc/PID/mountinfo` writes it, with the space, tab, line
/// feed and backslash it escapes (`\040`...) put back.
pub(crate) fn unescape_mount_field(escaped: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some((&first, after)) = rest.split_first() {
        let octal = after.get(..3).filter(|digits| {
            first == b'\\' && digits.iter().all(|digit| (b'0'..=b'7').contains(digit))
        });
        match octal {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
                bytes.push(value as u8);
                rest = &after[3..];
            }
            None => {
                bytes.push(first);
                rest = after;
            }
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:25 / /proc rw - proc proc rw
40 22 8:1 /srv/ws /mnt/alias rw shared:1 - ext4 /dev/sda1 rw
41 22 8:1 /srv/ws/sub /opt/sub\\040view rw shared:1 - ext4 /dev/sda1 rw
42 22 8:1 /srv /var/whole-srv rw shared:1 - ext4 /dev/sda1 rw
43 22 8:2 /srv/ws /elsewhere rw - ext4 /dev/sda2 rw
50 22 8:3 / /home rw - ext4 /dev/sda3 rw
51 22 8:3 /me/proj /work rw - ext4 /dev/sda3 rw
";

    #[test]
    fn each_mount_of_the_same_files_is_another_name() {
        let places = [PathBuf::from("/srv/ws"), PathBuf::from("/home/me/proj/app")];
        let aliases = MountAliases::from_mountinfo(MOUNTINFO.as_bytes(), &places);
        // (a path, its other names)
        let cases: &[(&str, &[&str])] = &[
            ("/mnt/alias/Makefile", &["/srv/ws/Makefile"]),
            ("/mnt/alias", &["/srv/ws"]),
            ("/opt/sub view/x", &["/srv/ws/sub/x"]),
            ("/var/whole-srv/ws/bin", &["/srv/ws/bin"]),
            // Another file system's /srv/ws is other files.
            ("/elsewhere/Makefile", &[]),
            ("/var/whole-srv/other", &[]),
            ("/work/app/x", &["/home/me/proj/app/x"]),
            ("/usr/bin/make", &[]),
        ];
        for (path, expected) in cases {
            let names: Vec<PathBuf> = aliases.other_names(Path::new(path)).collect();
            let expected: Vec<PathBuf> = expected.iter().map(PathBuf::from).collect();
            assert_eq!(names, expected, "{path}");
        }
    }

    #[test]
    fn a_place_shown_once_has_no_other_name() {
        let places = [PathBuf::from("/home/me/other")];
        let aliases = MountAliases::from_mountinfo(MOUNTINFO.as_bytes(), &places);
        assert_eq!(aliases.aliases().count(), 0);
    }

    #[test]
    fn mount_points_are_read_as_the_mount_table_escapes_them() {
        let cases: [(&[u8], &[u8]); 4] = [
            (b"/tmp/plain", b"/tmp/plain"),
            (b"/tmp/with\\040space\\011tab", b"/tmp/with space\ttab"),
            (b"/tmp/back\\134slash\\012", b"/tmp/back\\slash\n"),
            // Not an escape: left as it is.
            (b"/tmp/odd\\09x\\", b"/tmp/odd\\09x\\"),
        ];
        for (escaped, path) in cases {
            assert_eq!(unescape_mount_field(escaped), path);
        }
    }
}
