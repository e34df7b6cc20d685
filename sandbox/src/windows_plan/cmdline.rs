//! From argv and an environment to what `CreateProcessW` takes: one
//! command-line string that `CommandLineToArgvW` (and the C runtime) split
//! back into exactly the same arguments, the `cmd.exe` form for batch
//! files, PowerShell's encoded form for scripts, and the environment block
//! sorted as Windows requires. Everything is UTF-16 code units, Windows'
//! own string form, so nothing is lost converting.

use super::WindowsPlanError;

/// UTF-16 code units of `text` (for callers holding `str`).
pub fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().collect()
}

const QUOTE: u16 = b'"' as u16;
const BACKSLASH: u16 = b'\\' as u16;
const SPACE: u16 = b' ' as u16;

/// Quotes `argv` into one command line. The program name follows its own
/// rule (`CommandLineToArgvW` reads it up to the next quote, with no
/// escapes), so a program name holding `"` is refused; every other
/// argument is quoted when it is empty or holds white space, a quote or a
/// character beyond ASCII, with backslashes doubled only where they
/// precede a quote; one that a program reading its command line in an
/// ANSI code page would split otherwise is refused
/// ([`refuse_best_fit_quoting`]).
pub fn command_line<A: AsRef<[u16]>>(argv: &[A]) -> Result<Vec<u16>, WindowsPlanError> {
    let Some((program, arguments)) = argv.split_first() else {
        return Err(WindowsPlanError::BadCommand("no program to run".into()));
    };
    let program = program.as_ref();
    refuse_nul(program)?;
    if program.is_empty() || program.contains(&QUOTE) {
        return Err(WindowsPlanError::BadCommand(
            "a program name cannot be empty or hold a double quote on Windows".into(),
        ));
    }
    refuse_best_fit_quoting(program)?;
    let mut line = Vec::new();
    if program.iter().any(|&unit| is_blank(unit) || unit >= 0x80) {
        line.push(QUOTE);
        line.extend_from_slice(program);
        line.push(QUOTE);
    } else {
        line.extend_from_slice(program);
    }
    for argument in arguments {
        let argument = argument.as_ref();
        refuse_nul(argument)?;
        refuse_best_fit_quoting(argument)?;
        line.push(SPACE);
        quote_argument(argument, &mut line);
    }
    Ok(line)
}

/// Characters that Windows' best-fit mapping turns into `"` when a program
/// reads its command line in an ANSI code page (`GetCommandLineA`, a C
/// `main`): the fullwidth quote, the double prime and their kin. Not the
/// typographic quotes (U+201C, U+201D, U+201E), which the common ANSI code
/// pages hold as characters of their own (or map to `?`), and which text
/// often has.
const BEST_FIT_QUOTES: &[u16] = &[0x02ba, 0x02dd, 0x030e, 0x2033, 0x3003, 0xff02];

/// Characters that best-fit mapping turns into `\` (the yen and won signs
/// are the backslash's byte in Japanese and Korean code pages).
const BEST_FIT_BACKSLASHES: &[u16] = &[0x00a5, 0x20a9, 0x2216, 0xfe68, 0xff3c];

/// Refuses an argument that an ANSI program would split differently from
/// a Unicode one: a quote look-alike anywhere (it would open or close the
/// quotes), or a backslash look-alike in a run of backslashes before a
/// quote or the argument's end, where, as `\`, it would escape the quote.
/// Blank look-alikes (U+3000) need no refusal: every argument with a
/// character beyond ASCII is quoted.
fn refuse_best_fit_quoting(argument: &[u16]) -> Result<(), WindowsPlanError> {
    let refused = |what: &str| {
        Err(WindowsPlanError::BadCommand(format!(
            "an argument holds {what}, which a program reading its command line in an ANSI code \
             page sees as a quote or a backslash: such a program would get other arguments than \
             the rules judged, and execgate cannot tell which programs do"
        )))
    };
    if argument.iter().any(|unit| BEST_FIT_QUOTES.contains(unit)) {
        return refused("a character like a double quote");
    }
    let mut run_has_look_alike = false;
    for &unit in argument {
        match unit {
            BACKSLASH => {}
            unit if BEST_FIT_BACKSLASHES.contains(&unit) => run_has_look_alike = true,
            QUOTE if run_has_look_alike => return refused("a character like a backslash"),
            _ => run_has_look_alike = false,
        }
    }
    if run_has_look_alike {
        return refused("a character like a backslash at its end");
    }
    Ok(())
}

fn is_blank(unit: u16) -> bool {
    [b' ', b'\t', b'\n', 0x0b]
        .iter()
        .any(|&blank| unit == u16::from(blank))
}

fn refuse_nul(text: &[u16]) -> Result<(), WindowsPlanError> {
    if text.contains(&0) {
        return Err(WindowsPlanError::BadCommand(
            "an argument holds a NUL character".into(),
        ));
    }
    Ok(())
}

fn quote_argument(argument: &[u16], line: &mut Vec<u16>) {
    // Beyond ASCII, a character may be a blank to a program that reads
    // its command line in an ANSI code page (U+3000 becomes a space).
    if !argument.is_empty()
        && !argument
            .iter()
            .any(|&unit| is_blank(unit) || unit == QUOTE || unit >= 0x80)
    {
        line.extend_from_slice(argument);
        return;
    }
    line.push(QUOTE);
    let mut backslashes = 0usize;
    for &unit in argument {
        if unit == BACKSLASH {
            backslashes += 1;
            continue;
        }
        let doubled = if unit == QUOTE {
            backslashes * 2 + 1
        } else {
            backslashes
        };
        line.extend(std::iter::repeat_n(BACKSLASH, doubled));
        backslashes = 0;
        line.push(unit);
    }
    // Before the closing quote every backslash is doubled, or the last one
    // would escape it.
    line.extend(std::iter::repeat_n(BACKSLASH, backslashes * 2));
    line.push(QUOTE);
}

/// ASCII that a batch argument may hold unquoted: letters, digits and
/// these. Every other ASCII character (white space, `&|<>()^"!` and the
/// separators `,;=` among them) and every control character makes it
/// quoted: listing what is safe, not what is special, fails closed for a
/// character cmd treats specially that we did not think of.
const BATCH_UNQUOTED: &[u8] = br"#$*+-./:?@\_";

/// Whether a batch argument must be quoted for cmd.
fn batch_needs_quotes(argument: &[u16]) -> bool {
    argument.is_empty()
        // A trailing backslash is doubled inside quotes, so that a batch
        // file's `"%~1"` or a program given `%*` does not read `\"` as an
        // escaped quote and take the next arguments into this one.
        || argument.last() == Some(&BACKSLASH)
        || argument.iter().any(|&unit| match u8::try_from(unit) {
            Ok(byte) if byte.is_ascii() => {
                !(byte.is_ascii_alphanumeric() || BATCH_UNQUOTED.contains(&byte))
            }
            // Plain text to cmd, but maybe a blank to the program the
            // batch file passes it on to, in an ANSI code page.
            Ok(_) | Err(_) => true,
        })
}

/// One batch argument: as it is, or quoted with every `"` doubled (`""`,
/// which keeps cmd inside the quotes and which `CommandLineToArgvW` reads
/// as one quote) and the backslashes before a quote doubled for the C
/// runtime of a program the batch file passes it on to.
fn quote_batch_argument(argument: &[u16], line: &mut Vec<u16>) {
    if !batch_needs_quotes(argument) {
        line.extend_from_slice(argument);
        return;
    }
    line.push(QUOTE);
    let mut backslashes = 0usize;
    for &unit in argument {
        if unit == BACKSLASH {
            backslashes += 1;
        } else {
            if unit == QUOTE {
                line.extend(std::iter::repeat_n(BACKSLASH, backslashes));
                line.push(QUOTE);
            }
            backslashes = 0;
        }
        line.push(unit);
    }
    line.extend(std::iter::repeat_n(BACKSLASH, backslashes));
    line.push(QUOTE);
}

/// The command line for running a batch file through `cmd.exe /d /s
/// /v:off /c "..."` (how Windows runs `.bat` and `.cmd` files), such that
/// no argument can make cmd run anything: cmd reads the line twice (once
/// for `/c`, once more when the batch file expands `%*` or `%1`), and `^`
/// escapes survive only the first, so nothing is escaped with `^`.
/// Instead every argument holding anything but letters, digits and
/// `#$*+-./:?@\_` is quoted (`"` inside doubled), so that no cmd
/// metacharacter ever stands outside quotes in either reading; the batch
/// file's path is always quoted, and `/s` has cmd strip exactly the outer
/// quotes added here (the CVE-2024-24576 fix of Rust's standard library
/// takes the same approach). Refused, because cmd cannot take them
/// literally in any spelling: `%` (expanded before any quote or escape is
/// read), line breaks (they end the command), NUL, and a `"` in the batch
/// file's path.
pub fn cmd_command_line<A: AsRef<[u16]>>(
    cmd_exe: &[u16],
    argv: &[A],
) -> Result<Vec<u16>, WindowsPlanError> {
    let Some((script, arguments)) = argv.split_first() else {
        return Err(WindowsPlanError::BadCommand("no batch file to run".into()));
    };
    let script = script.as_ref();
    if script.is_empty() || script.contains(&QUOTE) {
        return Err(WindowsPlanError::BadCommand(
            "a batch file's path cannot be empty or hold a double quote on Windows".into(),
        ));
    }
    for argument in argv {
        let argument = argument.as_ref();
        refuse_nul(argument)?;
        refuse_best_fit_quoting(argument)?;
        if argument.iter().any(|&unit| {
            unit == u16::from(b'%') || unit == u16::from(b'\r') || unit == u16::from(b'\n')
        }) {
            return Err(WindowsPlanError::BadCommand(
                "an argument for a batch file holds `%` or a line break, which cmd.exe cannot \
                 take literally"
                    .into(),
            ));
        }
    }
    let mut line = command_line(&[cmd_exe])?;
    line.extend(wide(" /d /s /v:off /c \""));
    line.push(QUOTE);
    line.extend_from_slice(script);
    line.push(QUOTE);
    for argument in arguments {
        line.push(SPACE);
        quote_batch_argument(argument.as_ref(), &mut line);
    }
    line.push(QUOTE);
    Ok(line)
}

/// `cmd.exe /d /s /c "SCRIPT"`: the script is cmd's to interpret (that is
/// what the user asked for); `/s` makes cmd strip exactly the outer quotes
/// added here.
pub fn cmd_script_line(cmd_exe: &[u16], script: &[u16]) -> Result<Vec<u16>, WindowsPlanError> {
    refuse_nul(script)?;
    let mut line = command_line(&[cmd_exe])?;
    line.extend(wide(" /d /s /c \""));
    line.extend_from_slice(script);
    line.push(QUOTE);
    Ok(line)
}

/// `pwsh -NoLogo -NoProfile -NonInteractive -EncodedCommand BASE64`: the
/// script as base64 of its UTF-16LE form, so no quoting rule applies.
pub fn pwsh_script_line(pwsh_exe: &[u16], script: &[u16]) -> Result<Vec<u16>, WindowsPlanError> {
    refuse_nul(script)?;
    let bytes: Vec<u8> = script.iter().flat_map(|unit| unit.to_le_bytes()).collect();
    let encoded = base64(&bytes);
    command_line(&[
        pwsh_exe.to_vec(),
        wide("-NoLogo"),
        wide("-NoProfile"),
        wide("-NonInteractive"),
        wide("-EncodedCommand"),
        wide(&encoded),
    ])
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let triple = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let value = u32::from(triple[0]) << 16 | u32::from(triple[1]) << 8 | u32::from(triple[2]);
        for position in 0..4 {
            if position <= chunk.len() {
                let index = (value >> (18 - 6 * position)) & 0x3f;
                out.push(char::from(ALPHABET[index as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The environment block for `CREATE_UNICODE_ENVIRONMENT`:
/// `NAME=VALUE\0` entries sorted by name without regard to case (as
/// Windows requires), then a final `\0`. Names that differ only by case
/// are refused rather than one silently dropped; a name holding `=` after
/// its first character, or anything holding NUL, is refused.
pub fn environment_block<N: AsRef<[u16]>, V: AsRef<[u16]>>(
    variables: &[(N, V)],
) -> Result<Vec<u16>, WindowsPlanError> {
    let mut entries: Vec<(Vec<u16>, &[u16], &[u16])> = Vec::with_capacity(variables.len());
    for (name, value) in variables {
        let (name, value) = (name.as_ref(), value.as_ref());
        let bad_name = name.is_empty()
            || name.contains(&0)
            || name.iter().skip(1).any(|&unit| unit == u16::from(b'='));
        if bad_name || value.contains(&0) {
            return Err(WindowsPlanError::BadEnvironment(String::from_utf16_lossy(
                name,
            )));
        }
        entries.push((name.iter().map(|&unit| upcase(unit)).collect(), name, value));
    }
    entries.sort_by(|left, right| left.0.cmp(&right.0));
    if let Some(pair) = entries.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(WindowsPlanError::BadEnvironment(format!(
            "{} and {} differ only by case",
            String::from_utf16_lossy(pair[0].1),
            String::from_utf16_lossy(pair[1].1)
        )));
    }
    let mut block = Vec::new();
    for (_, name, value) in &entries {
        block.extend_from_slice(name);
        block.push(u16::from(b'='));
        block.extend_from_slice(value);
        block.push(0);
    }
    if entries.is_empty() {
        block.push(0);
    }
    block.push(0);
    Ok(block)
}

/// One UTF-16 unit upper-cased the way Windows compares names: unit by
/// unit, a unit whose upper case is not a single unit left as it is.
fn upcase(unit: u16) -> u16 {
    let Some(character) = char::from_u32(u32::from(unit)) else {
        return unit;
    };
    let mut upper = character.to_uppercase();
    match (upper.next(), upper.next()) {
        (Some(single), None) => u16::try_from(u32::from(single)).unwrap_or(unit),
        _ => unit,
    }
}
