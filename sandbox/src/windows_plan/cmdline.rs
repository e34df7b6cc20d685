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
/// argument is quoted when it is empty or holds white space or a quote,
/// with backslashes doubled only where they precede a quote.
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
    let mut line = Vec::new();
    if program.iter().any(|&unit| is_blank(unit)) {
        line.push(QUOTE);
        line.extend_from_slice(program);
        line.push(QUOTE);
    } else {
        line.extend_from_slice(program);
    }
    for argument in arguments {
        let argument = argument.as_ref();
        refuse_nul(argument)?;
        line.push(SPACE);
        quote_argument(argument, &mut line);
    }
    Ok(line)
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
    if !argument.is_empty() && !argument.iter().any(|&unit| is_blank(unit) || unit == QUOTE) {
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

/// Characters `cmd.exe` interprets on its command line.
const CMD_METACHARACTERS: &[u8] = b"()!^\"<>&|";

/// The command line for running `argv` through `cmd.exe /d /v:off /c`
/// (how Windows runs `.bat` and `.cmd` files) with every argument reaching
/// the batch file as written: first quoted for `CommandLineToArgvW`, then
/// every `cmd` metacharacter, quotes included, escaped with `^`. The line
/// starts with `^"`, never with `"`, so `cmd` does not apply its rule of
/// stripping the outer quotes. `%` (variable expansion runs before `^` is
/// read, so no escape is reliable) and line breaks (they end the command)
/// are refused.
pub fn cmd_command_line<A: AsRef<[u16]>>(
    cmd_exe: &[u16],
    argv: &[A],
) -> Result<Vec<u16>, WindowsPlanError> {
    for argument in argv {
        if argument.as_ref().iter().any(|&unit| {
            unit == u16::from(b'%') || unit == u16::from(b'\r') || unit == u16::from(b'\n')
        }) {
            return Err(WindowsPlanError::BadCommand(
                "an argument for a batch file holds `%` or a line break, which cmd.exe cannot \
                 take literally"
                    .into(),
            ));
        }
    }
    let mut quoted = Vec::new();
    for (index, argument) in argv.iter().enumerate() {
        let argument = argument.as_ref();
        refuse_nul(argument)?;
        if index > 0 {
            quoted.push(SPACE);
        }
        // The program too is quoted as an argument: cmd, not
        // CommandLineToArgvW, reads it.
        quote_argument(argument, &mut quoted);
        if index == 0 && argument.contains(&QUOTE) {
            return Err(WindowsPlanError::BadCommand(
                "a program name cannot hold a double quote on Windows".into(),
            ));
        }
    }
    let mut line = command_line(&[cmd_exe])?;
    line.extend(wide(" /d /v:off /c "));
    for unit in quoted {
        if CMD_METACHARACTERS
            .iter()
            .any(|&meta| unit == u16::from(meta))
        {
            line.push(u16::from(b'^'));
        }
        line.push(unit);
    }
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
