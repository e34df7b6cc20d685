//! The command line as clap derives it, with one change: an option that
//! takes a value takes the next word as it, whatever that word starts
//! with, as getopt does (`--cwd -dash`, `--rules -x.rules`). clap would
//! take such a word for an option of its own and suggest `-- -dash`,
//! which does not pass a value. It must never change which words are the
//! command's: `--` is never an option's value (an option missing its
//! value is an error, as before, not a run with `--` as the value), and
//! words after it, or after the first word that is no option, are the
//! command's.

use clap::{ArgMatches, CommandFactory, Parser};

/// `T`'s command, as [`parse`] reads it: for completions and man pages.
pub fn command<T: CommandFactory>() -> clap::Command {
    next_word_is_the_value(T::command())
}

/// The arguments of this process, read as [`command`] says; exits, as
/// clap does, on an error or `--help`.
pub fn parse<T: Parser>() -> T {
    let mut command = command::<T>();
    let mut matches: ArgMatches = command.get_matches_mut();
    if let Some(option) = option_given_the_separator(&command, &matches) {
        command
            .error(
                clap::error::ErrorKind::InvalidValue,
                format!(
                    "a value is required for '{option}' (`--` ends the options, and is no \
                     option's value)"
                ),
            )
            .exit();
    }
    T::from_arg_matches_mut(&mut matches).unwrap_or_else(|error| error.format(&mut command).exit())
}

fn next_word_is_the_value(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg| {
            if is_option(&arg) && arg.get_action().takes_values() {
                arg.allow_hyphen_values(true)
            } else {
                arg
            }
        })
        .mut_subcommands(next_word_is_the_value)
}

fn is_option(arg: &clap::Arg) -> bool {
    arg.get_long().is_some() || arg.get_short().is_some()
}

/// The option, as `--name`, that took `--` for its value, in `matches`
/// or a subcommand's.
fn option_given_the_separator(command: &clap::Command, matches: &ArgMatches) -> Option<String> {
    for arg in command.get_arguments().filter(|arg| is_option(arg)) {
        let id = arg.get_id().as_str();
        let given = matches.try_get_raw(id).ok().flatten();
        if given.is_some_and(|mut values| values.any(|value| value == "--")) {
            return Some(match arg.get_long() {
                Some(long) => format!("--{long}"),
                None => format!("-{}", arg.get_short().unwrap_or_default()),
            });
        }
    }
    let (name, sub_matches) = matches.subcommand()?;
    option_given_the_separator(command.find_subcommand(name)?, sub_matches)
}
