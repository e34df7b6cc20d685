//! The loader's variables, carried past bubblewrap under other names.
//!
//! bubblewrap runs outside every sandbox, and the helper starts inside the
//! mount view but before its Landlock and seccomp. The C library's loader
//! and locale machinery they start with load what the environment names
//! (`LD_PRELOAD`, `LD_LIBRARY_PATH`, `GCONV_PATH`...): a library the
//! sandbox could have written, named in the environment an agent gives its
//! command, would run there (probe 173). So the command's own values travel
//! as `EXECGATE_CARRIED_NAME`, which no loader reads, and the helper gives
//! them their names back for the command alone, as it executes it.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// What a carried variable's name starts with.
const CARRIED: &str = "EXECGATE_CARRIED_";

/// The C library's variables that make a program load or read code or
/// data from where they say (glibc's list of those it ignores in a
/// set-user-ID program), by exact name.
const NAMES: &[&str] = &[
    "GCONV_PATH",
    "GETCONF_DIR",
    "GLIBC_TUNABLES",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "LOCPATH",
    "NIS_PATH",
    "NLSPATH",
    "RESOLV_HOST_CONF",
    "RES_OPTIONS",
    "TZDIR",
];

/// The same, by prefix: the dynamic loader's and the allocator's.
const PREFIXES: &[&str] = &["LD_", "MALLOC_"];

/// Whether the loader or the C library acts on `name` as a program starts.
/// A `Command` takes a name with `=` in it, and the variable is then what
/// comes before the first one (review 36: `GCONV_PATH=/w` set to `x` is
/// `GCONV_PATH`, valued `/w=x`).
fn is_loader_variable(name: &[u8]) -> bool {
    let name = name.split(|byte| *byte == b'=').next().unwrap_or(name);
    NAMES.iter().any(|known| known.as_bytes() == name)
        || PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix.as_bytes()))
}

/// Gives `command` (bubblewrap, about to be spawned) the loader's
/// variables of its environment under carried names instead. Its
/// environment must be explicit (`env_clear` and `envs`, as every shell a
/// session starts has): such a variable it would only inherit is removed,
/// not carried.
pub(crate) fn carry(command: &mut std::process::Command) {
    let explicit: Vec<(OsString, Option<OsString>)> = command
        .get_envs()
        .map(|(name, value)| (name.to_owned(), value.map(OsStr::to_owned)))
        .collect();
    for (name, value) in explicit {
        if !is_loader_variable(name.as_bytes()) {
            continue;
        }
        command.env_remove(&name);
        if let Some(value) = value {
            let mut carried = OsString::from(CARRIED);
            carried.push(&name);
            command.env(carried, value);
        }
    }
    for (name, _) in std::env::vars_os() {
        if is_loader_variable(name.as_bytes()) {
            command.env_remove(name);
        }
    }
}

/// The command's environment from the helper's own: carried variables
/// under their names again (over any of the same name), and no other
/// `EXECGATE_CARRIED_` names.
pub(crate) fn restore(
    environment: impl Iterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    let (carried, own): (Vec<_>, Vec<_>) =
        environment.partition(|(name, _)| name.as_bytes().starts_with(CARRIED.as_bytes()));
    let carried: Vec<(OsString, OsString)> = carried
        .into_iter()
        .filter_map(|(name, value)| {
            let name = name.into_vec().split_off(CARRIED.len());
            is_loader_variable(&name).then(|| (OsString::from_vec(name), value))
        })
        .collect();
    let mut environment: Vec<(OsString, OsString)> = own
        .into_iter()
        .filter(|(name, _)| !carried.iter().any(|(restored, _)| restored == name))
        .collect();
    environment.extend(carried);
    environment
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        list.iter()
            .map(|(name, value)| (OsString::from(name), OsString::from(value)))
            .collect()
    }

    #[test]
    fn loader_variables_are_carried_and_others_pass() {
        let mut command = std::process::Command::new("/bin/true");
        command.env_clear().envs([
            ("LD_PRELOAD", "/w/evil.so"),
            ("GCONV_PATH", "/w/gconv"),
            ("MALLOC_CHECK_", "3"),
            ("PATH", "/usr/bin"),
            ("LDFLAGS", "-s"),
            ("GLIBC_TUNABLES=glibc.malloc.check", "3"),
        ]);
        carry(&mut command);
        // What the command is given; what it is not shows as `None`.
        let mut envs: Vec<(String, String)> = command
            .get_envs()
            .filter_map(|(name, value)| {
                Some((
                    name.to_string_lossy().into_owned(),
                    value?.to_string_lossy().into_owned(),
                ))
            })
            .collect();
        envs.sort();
        let set = |name: &str, value: &str| (name.to_owned(), value.to_owned());
        assert_eq!(
            envs,
            [
                set("EXECGATE_CARRIED_GCONV_PATH", "/w/gconv"),
                set("EXECGATE_CARRIED_GLIBC_TUNABLES=glibc.malloc.check", "3"),
                set("EXECGATE_CARRIED_LD_PRELOAD", "/w/evil.so"),
                set("EXECGATE_CARRIED_MALLOC_CHECK_", "3"),
                set("LDFLAGS", "-s"),
                set("PATH", "/usr/bin"),
            ]
        );
    }

    #[test]
    fn carried_variables_get_their_names_back_and_nothing_else_does() {
        let restored = restore(
            pairs(&[
                ("PATH", "/usr/bin"),
                ("LD_PRELOAD", "/inherited.so"),
                ("EXECGATE_CARRIED_LD_PRELOAD", "/w/lib.so"),
                ("EXECGATE_CARRIED_PATH", "/w/bin"),
                ("EXECGATE_CARRIED_", "x"),
            ])
            .into_iter(),
        );
        assert_eq!(
            restored,
            pairs(&[("PATH", "/usr/bin"), ("LD_PRELOAD", "/w/lib.so")])
        );
    }
}
