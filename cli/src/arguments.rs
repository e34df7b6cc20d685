//! The command line as clap derives it, with one change: an option that
//! takes a value takes the next word as it, whatever that word starts
//! with, as getopt does (`--cwd -dash`, `--rules -x.rules`). clap would
//! take such a word for an option of its own and suggest `-- -dash`,
//! which does not pass a value. It must never change which words are the
//! command's: those after `--`, or after the first word that is no option.

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
    T::from_arg_matches_mut(&mut matches).unwrap_or_else(|error| error.format(&mut command).exit())
}

fn next_word_is_the_value(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg| {
            let is_option = arg.get_long().is_some() || arg.get_short().is_some();
            if is_option && arg.get_action().takes_values() {
                arg.allow_hyphen_values(true)
            } else {
                arg
            }
        })
        .mut_subcommands(next_word_is_the_value)
}
