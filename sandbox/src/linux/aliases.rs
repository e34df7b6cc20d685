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
    /// The mounts could not be read: any place may have names of which
    /// nothing is known ([`MountAliases::unknown`]).
    unread: bool,
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
    /// in them, as the mounts of this process show them now. Mounts that
    /// cannot be read make them [`unknown`](MountAliases::unknown).
    pub fn of(places: &[PathBuf]) -> MountAliases {
        if places.is_empty() {
            return MountAliases::default();
        }
        match std::fs::read("/proc/self/mountinfo") {
            Ok(text) => MountAliases::from_mountinfo(&text, places),
            Err(_) => MountAliases {
                unread: true,
                ..MountAliases::default()
            },
        }
    }

    /// Whether the mounts could not be read (too many open files, say):
    /// then no check by path may take a place to have no other name, and
    /// callers refuse what depends on it.
    pub fn unknown(&self) -> bool {
        self.unread
    }

    fn from_mountinfo(text: &[u8], places: &[PathBuf]) -> MountAliases {
        let mounts: Vec<Mount> = text
            .split(|&byte| byte == b'\n')
            .filter_map(parse)
            .collect();
        // What is mounted below a place is written through it too
        // (bubblewrap binds a writable root with its submounts): each such
        // mount's files may have other names of their own.
        let mut places = places.to_vec();
        let below: Vec<PathBuf> = mounts
            .iter()
            .filter(|mount| {
                places
                    .iter()
                    .any(|place| mount.point.starts_with(place) && mount.point != *place)
            })
            .map(|mount| mount.point.clone())
            .collect();
        places.extend(below);
        let mut names = Vec::new();
        for place in &places {
            let Some(own) = shown_at(&mounts, place) else {
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
        MountAliases {
            unread: false,
            names,
        }
    }

    /// Whether `path`, by its own name or another, is in one of `roots`.
    pub fn under_any(&self, path: &Path, roots: &[PathBuf]) -> bool {
        std::iter::once(path.to_path_buf())
            .chain(self.other_names(path))
            .any(|name| roots.iter().any(|root| name.starts_with(root)))
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

/// The mount that shows `place`: the deepest one over it that no later
/// mount covers (one on a directory above it, or on the same point, hides
/// it).
fn shown_at<'a>(mounts: &'a [Mount], place: &Path) -> Option<&'a Mount> {
    let over = |mount: &Mount| place.starts_with(&mount.point);
    mounts
        .iter()
        .enumerate()
        .filter(|(_, mount)| over(mount))
        .filter(|(index, mount)| {
            !mounts[index + 1..]
                .iter()
                .any(|later| over(later) && mount.point.starts_with(&later.point))
        })
        .max_by_key(|(index, mount)| (mount.point.components().count(), *index))
        .map(|(_, mount)| mount)
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

    /// A review: a file system mounted below a writable root is written
    /// through it, and may be shown elsewhere too; a mount hidden by a
    /// later one above it shows nothing.
    #[test]
    fn mounts_below_a_place_and_hidden_mounts() {
        let mountinfo = "\
22 1 8:1 / / rw - ext4 /dev/sda1 rw
60 22 8:5 /x /home/me/ws/data rw - ext4 /dev/sda5 rw
61 22 8:5 / /srv rw - ext4 /dev/sda5 rw
70 22 8:6 / /opt/a/b rw - ext4 /dev/sda6 rw
71 22 8:7 / /opt/a rw - ext4 /dev/sda7 rw
72 22 8:7 / /mnt/seven rw - ext4 /dev/sda7 rw
";
        let places = [PathBuf::from("/home/me/ws"), PathBuf::from("/opt/a/b/w")];
        let aliases = MountAliases::from_mountinfo(mountinfo.as_bytes(), &places);
        let cases: &[(&str, &[&str])] = &[
            ("/srv/x/Makefile", &["/home/me/ws/data/Makefile"]),
            // /opt/a/b/w is on sda7 (71 hides 70), also at /mnt/seven.
            ("/mnt/seven/b/w/f", &["/opt/a/b/w/f"]),
        ];
        for (path, expected) in cases {
            let names: Vec<PathBuf> = aliases.other_names(Path::new(path)).collect();
            let expected: Vec<PathBuf> = expected.iter().map(PathBuf::from).collect();
            assert_eq!(names, expected, "{path}");
        }
        let roots = [PathBuf::from("/home/me/ws")];
        assert!(aliases.under_any(Path::new("/srv/x"), &roots));
        assert!(!aliases.under_any(Path::new("/srv/y"), &roots));
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
