//! The head+tail buffer: keeps the first and the last bytes of a stream
//! within a fixed capacity, counts what it dropped in between, and never
//! hands out a cut UTF-8 sequence.

use std::collections::VecDeque;

/// What to do with an incomplete UTF-8 sequence at the end of the kept
/// bytes when they are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trailing {
    /// Keep it for the next take: the rest of it may still arrive.
    HoldBack,
    /// Hand it out: the stream has ended.
    Release,
}

/// Bytes of a stream, at most `capacity` of them: half from the start,
/// half from the end.
#[derive(Debug)]
pub(crate) struct HeadTail {
    capacity: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    omitted: u64,
}

impl HeadTail {
    pub(crate) fn new(capacity: usize) -> HeadTail {
        HeadTail {
            capacity,
            head: Vec::new(),
            tail: VecDeque::new(),
            omitted: 0,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    pub(crate) fn push(&mut self, mut bytes: &[u8]) {
        let head_room = (self.capacity / 2).saturating_sub(self.head.len());
        if self.omitted == 0 && self.tail.is_empty() && head_room > 0 {
            let now = head_room.min(bytes.len());
            self.head.extend_from_slice(&bytes[..now]);
            bytes = &bytes[now..];
        }
        let tail_capacity = self.capacity - self.capacity / 2;
        if bytes.len() >= tail_capacity {
            let dropped = self.tail.len() + bytes.len() - tail_capacity;
            self.omitted += dropped as u64;
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - tail_capacity..]);
            return;
        }
        let overflow = (self.tail.len() + bytes.len()).saturating_sub(tail_capacity);
        self.tail.drain(..overflow);
        self.omitted += overflow as u64;
        self.tail.extend(bytes);
    }

    /// Takes what is kept (leaving an incomplete trailing sequence behind
    /// when asked to) and how many bytes were dropped from its middle.
    pub(crate) fn take(&mut self, trailing: Trailing) -> (Vec<u8>, u64) {
        let mut head = std::mem::take(&mut self.head);
        let mut tail: Vec<u8> = std::mem::take(&mut self.tail).into();
        let mut omitted = std::mem::take(&mut self.omitted);
        if omitted > 0 {
            // The cut in the middle falls on character boundaries.
            let cut = incomplete_suffix(&head);
            head.truncate(head.len() - cut);
            let lead = tail
                .iter()
                .take(3)
                .take_while(|byte| is_continuation(**byte))
                .count();
            tail.drain(..lead);
            omitted += (cut + lead) as u64;
        }
        head.append(&mut tail);
        if trailing == Trailing::HoldBack {
            let held = incomplete_suffix(&head);
            self.head = head.split_off(head.len() - held);
        }
        (head, omitted)
    }
}

/// `bytes` cut to at most `max` in the middle, on character boundaries,
/// and how many bytes that dropped.
pub(crate) fn cut_middle(bytes: &[u8], max: usize) -> (Vec<u8>, u64) {
    if bytes.len() <= max {
        return (bytes.to_vec(), 0);
    }
    let mut buffer = HeadTail::new(max);
    buffer.push(bytes);
    buffer.take(Trailing::Release)
}

fn is_continuation(byte: u8) -> bool {
    byte & 0xC0 == 0x80
}

/// How many bytes at the end of `bytes` start a UTF-8 sequence that is not
/// complete yet (0 when the end is complete, or not UTF-8 at all).
fn incomplete_suffix(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let byte = bytes[bytes.len() - back];
        if is_continuation(byte) {
            continue;
        }
        let needed = match byte {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return 0,
        };
        return if back < needed { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (capacity, pushes, trailing) → (taken, omitted, left held back).
    type Case<'a> = (usize, Vec<&'a [u8]>, Trailing, &'a [u8], u64, usize);

    #[test]
    fn keeps_head_and_tail_and_counts_the_middle() {
        let e_acute = "é".as_bytes(); // C3 A9
        let euro = "€".as_bytes(); // E2 82 AC
        let cases: Vec<Case> = vec![
            // Fits: everything, in order.
            (10, vec![b"abc", b"def"], Trailing::Release, b"abcdef", 0, 0),
            (
                10,
                vec![b"0123456789"],
                Trailing::Release,
                b"0123456789",
                0,
                0,
            ),
            // Too much: the first five and the last five.
            (
                10,
                vec![b"0123456789ABCDEF"],
                Trailing::Release,
                b"01234BCDEF",
                6,
                0,
            ),
            (
                10,
                vec![b"0123", b"456789AB", b"CDEF"],
                Trailing::Release,
                b"01234BCDEF",
                6,
                0,
            ),
            (
                10,
                vec![b"01234", b"5", b"6", b"789ABCDEF"],
                Trailing::Release,
                b"01234BCDEF",
                6,
                0,
            ),
            // A character split between the head's end and the tail's start
            // is dropped on both sides and counted.
            (4, vec![b"a", euro, b"xyz"], Trailing::Release, b"ayz", 4, 0),
            (
                4,
                vec![b"ab", b"cd", b"e", e_acute],
                Trailing::Release,
                "abé".as_bytes(),
                3,
                0,
            ),
            (4, vec![b"abcdefg", euro], Trailing::Release, b"ab", 8, 0),
            // An incomplete character at the end waits for the rest.
            (
                10,
                vec![b"ab", &e_acute[..1]],
                Trailing::HoldBack,
                b"ab",
                0,
                1,
            ),
            (10, vec![b"ab", &euro[..2]], Trailing::HoldBack, b"ab", 0, 2),
            (
                10,
                vec![b"ab", euro],
                Trailing::HoldBack,
                "ab€".as_bytes(),
                0,
                0,
            ),
            (
                10,
                vec![b"ab", &euro[..2]],
                Trailing::Release,
                b"ab\xE2\x82",
                0,
                0,
            ),
            // Bytes that are not UTF-8 are not held back.
            (10, vec![b"ab\xFF"], Trailing::HoldBack, b"ab\xFF", 0, 0),
            (10, vec![b"ab\x80"], Trailing::HoldBack, b"ab\x80", 0, 0),
        ];
        for (capacity, pushes, trailing, taken, omitted, held) in cases {
            let mut buffer = HeadTail::new(capacity);
            for bytes in &pushes {
                buffer.push(bytes);
            }
            let got = buffer.take(trailing);
            assert_eq!(
                (got.0.as_slice(), got.1, buffer.len()),
                (taken, omitted, held),
                "capacity {capacity}, pushes {pushes:?}"
            );
        }
    }

    #[test]
    fn a_held_back_character_completes_with_the_next_bytes() {
        let mut buffer = HeadTail::new(16);
        buffer.push(b"x\xC3");
        assert_eq!(buffer.take(Trailing::HoldBack), (b"x".to_vec(), 0));
        buffer.push(b"\xA9y");
        assert_eq!(
            buffer.take(Trailing::HoldBack),
            ("éy".as_bytes().to_vec(), 0)
        );
        assert_eq!(buffer.take(Trailing::HoldBack), (Vec::new(), 0));
    }

    #[test]
    fn cut_middle_leaves_short_output_alone() {
        assert_eq!(cut_middle(b"short", 5), (b"short".to_vec(), 0));
        assert_eq!(cut_middle(b"longer", 4), (b"loer".to_vec(), 2));
        assert_eq!(
            cut_middle("ééé".as_bytes(), 4),
            ("éé".as_bytes().to_vec(), 2)
        );
    }
}
