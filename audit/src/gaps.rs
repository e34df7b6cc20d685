//! Requests a history's records skip.
//!
//! A session numbers the requests it serves 1, 2, 3, ... and records
//! every one (a decision, or the error that took its place: refused, or
//! left undecided at its end), and its `session-end` says how many it
//! numbered. Once that end is written, a number without such a record is
//! therefore a record removed from the log, or one in a file that was not
//! read. A session whose end is not among the records read
//! is left out: it may still be running, with a question open, or its
//! owner was killed. It is a signal for a reviewer, not proof: whoever can
//! rewrite the log can renumber it too. A session whose end says records
//! were not written (its share of the log spent) may skip as many numbers
//! as that: only more missing than it says is told (probe 214: a log
//! emptied mid-session went unreported once one record was lost).

use std::collections::BTreeMap;

use crate::record::AuditRecord;

/// The request numbers each session's records skip, gathered as records
/// are read, in any order; held as ranges, so a long history costs a few
/// numbers per session.
#[derive(Debug, Default)]
pub struct RequestGaps {
    sessions: BTreeMap<String, SessionRequests>,
}

#[derive(Debug, Default)]
struct SessionRequests {
    /// Its `session-start` was read: numbering begins at 1 within what was
    /// read. Without it (rotated away, or in a file not read), it begins at
    /// the lowest number read.
    started: bool,
    /// Its `session-end` was read.
    ended: bool,
    /// How many records its end says were not written: as many missing
    /// numbers are explained.
    lost: u64,
    /// How many requests its end says it numbered.
    numbered: Option<u64>,
    /// Numbers read, as disjoint inclusive ranges that do not touch, by
    /// their first number.
    seen: BTreeMap<u64, u64>,
}

/// One session's missing request numbers, as inclusive ranges.
#[derive(Debug, PartialEq, Eq)]
pub struct SessionGaps {
    pub session_id: String,
    pub missing: Vec<(u64, u64)>,
    /// The records its end says were not written (0 for none): fewer
    /// than the numbers missing.
    pub lost: u64,
}

impl SessionGaps {
    /// How many request numbers are missing.
    pub fn count(&self) -> u64 {
        self.missing
            .iter()
            .map(|&(first, last)| (last - first).saturating_add(1))
            .fold(0, u64::saturating_add)
    }
}

impl RequestGaps {
    pub fn see(&mut self, record: &AuditRecord) {
        let action = record.event.action.as_str();
        let starts = action == "session-start";
        let ends = action == "session-end";
        // A request's own record: its decision, or the error that took its
        // place. An escalation's start and end, or its connections, say
        // nothing of whether its decision is still there.
        let request = record
            .request_id
            .filter(|_| matches!(action, "decision" | "error"));
        if request.is_none() && !starts && !ends {
            return;
        }
        let fields = record.session.as_ref();
        let lost = fields.and_then(|session| session.lost_records);
        let session = self.sessions.entry(record.session_id.clone()).or_default();
        session.started |= starts;
        session.ended |= ends;
        session.lost = session.lost.max(lost.unwrap_or(0));
        if ends {
            session.numbered = fields.and_then(|session| session.requests);
        }
        if let Some(id) = request {
            add(&mut session.seen, id);
        }
    }

    /// Every ended session with numbers missing, by session id.
    pub fn gaps(&self) -> Vec<SessionGaps> {
        self.sessions
            .iter()
            .filter(|(_, session)| session.ended)
            .filter_map(|(id, session)| {
                let first = match session.seen.first_key_value() {
                    Some((&lowest, _)) if !session.started => lowest,
                    _ if session.started => 1,
                    _ => return None,
                };
                let mut missing = Vec::new();
                let mut next = first;
                for (&start, &end) in &session.seen {
                    if start > next {
                        missing.push((next, start - 1));
                    }
                    next = next.max(end.saturating_add(1));
                }
                // The last ones, which no later record brackets: the end
                // says how many there were.
                if let Some(numbered) = session.numbered.filter(|&numbered| numbered >= next) {
                    missing.push((next, numbered));
                }
                let gaps = SessionGaps {
                    session_id: id.clone(),
                    missing,
                    lost: session.lost,
                };
                (gaps.count() > session.lost).then_some(gaps)
            })
            .collect()
    }
}

/// Adds `id` to disjoint ranges that do not touch, keeping them so: a
/// lookup on each side, whatever order the numbers come in.
fn add(ranges: &mut BTreeMap<u64, u64>, id: u64) {
    let before = ranges
        .range(..=id)
        .next_back()
        .map(|(&start, &end)| (start, end));
    if before.is_some_and(|(_, end)| id <= end) {
        return;
    }
    let joins_before = before.filter(|&(_, end)| end.checked_add(1) == Some(id));
    let after = id
        .checked_add(1)
        .and_then(|next| ranges.get(&next).map(|&end| (next, end)));
    match (joins_before, after) {
        (Some((start, _)), Some((next, end))) => {
            ranges.remove(&next);
            ranges.insert(start, end);
        }
        (Some((start, _)), None) => {
            ranges.insert(start, id);
        }
        (None, Some((next, end))) => {
            ranges.remove(&next);
            ranges.insert(id, end);
        }
        (None, None) => {
            ranges.insert(id, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(session: &str, action: &str, request_id: Option<u64>) -> AuditRecord {
        let mut line = serde_json::json!({
            "@timestamp": "2026-12-04T10:00:00Z",
            "event": {"action": action, "outcome": "success"},
            "session_id": session,
            "process": {},
        });
        if let Some(id) = request_id {
            line["request_id"] = id.into();
        }
        serde_json::from_value(line).unwrap()
    }

    fn ended_with_lost(session: &str, lost: u64) -> AuditRecord {
        let mut end = record(session, "session-end", None);
        end.session = Some(crate::SessionFields {
            end_reason: "closed".into(),
            lost_records: Some(lost),
            ..crate::SessionFields::default()
        });
        end
    }

    #[test]
    fn ranges_stay_sorted_disjoint_and_apart() {
        // (ids added in this order, ranges after)
        type Case<'a> = (&'a [u64], &'a [(u64, u64)]);
        let cases: &[Case] = &[
            (&[1, 2, 3], &[(1, 3)]),
            (&[3, 2, 1], &[(1, 3)]),
            (&[1, 3], &[(1, 1), (3, 3)]),
            (&[1, 3, 2], &[(1, 3)]),
            (&[5, 1, 3], &[(1, 1), (3, 3), (5, 5)]),
            (&[5, 1, 3, 4], &[(1, 1), (3, 5)]),
            (&[5, 1, 3, 2, 4], &[(1, 5)]),
            (&[2, 2, 2], &[(2, 2)]),
            (&[10, 1, 5, 6, 7, 3, 2], &[(1, 3), (5, 7), (10, 10)]),
            (&[u64::MAX, u64::MAX - 1], &[(u64::MAX - 1, u64::MAX)]),
        ];
        for (ids, expected) in cases {
            let mut ranges = BTreeMap::new();
            for id in *ids {
                add(&mut ranges, *id);
            }
            let ranges: Vec<(u64, u64)> = ranges.into_iter().collect();
            assert_eq!(ranges, *expected, "ids {ids:?}");
        }
    }

    #[test]
    fn a_number_skipped_between_two_recorded_is_a_gap() {
        // (records as (session, action, request id), gaps expected)
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a str, Option<u64>)],
            &'a [(&'a str, &'a [(u64, u64)])],
        );
        let cases: &[Case] = &[
            (
                "every request recorded",
                &[
                    ("s", "session-start", None),
                    ("s", "decision", Some(1)),
                    ("s", "decision", Some(2)),
                    ("s", "start", Some(2)),
                    ("s", "exit", Some(2)),
                    ("s", "error", Some(3)),
                ],
                &[],
            ),
            (
                "records out of order (a prompt answered late)",
                &[
                    ("s", "session-start", None),
                    ("s", "decision", Some(2)),
                    ("s", "decision", Some(1)),
                ],
                &[],
            ),
            (
                "one removed in the middle",
                &[
                    ("s", "session-start", None),
                    ("s", "decision", Some(1)),
                    ("s", "decision", Some(3)),
                    ("s", "session-end", None),
                ],
                &[("s", &[(2, 2)])],
            ),
            (
                "one missing in a session whose end is not read (running, or killed)",
                &[
                    ("s", "session-start", None),
                    ("s", "decision", Some(1)),
                    ("s", "decision", Some(3)),
                ],
                &[],
            ),
            (
                "the first ones removed, the start read",
                &[
                    ("s", "session-start", None),
                    ("s", "decision", Some(4)),
                    ("s", "decision", Some(5)),
                    ("s", "session-end", None),
                ],
                &[("s", &[(1, 3)])],
            ),
            (
                "the start rotated away: numbering from the lowest read",
                &[
                    ("s", "decision", Some(4)),
                    ("s", "decision", Some(5)),
                    ("s", "session-end", None),
                ],
                &[],
            ),
            (
                "sessions apart",
                &[
                    ("a", "session-start", None),
                    ("b", "session-start", None),
                    ("a", "decision", Some(1)),
                    ("b", "decision", Some(2)),
                    ("a", "decision", Some(2)),
                    ("b", "decision", Some(7)),
                    ("a", "session-end", None),
                    ("b", "session-end", None),
                ],
                &[("b", &[(1, 1), (3, 6)])],
            ),
            (
                "a session that started and asked nothing",
                &[("s", "session-start", None), ("s", "session-end", None)],
                &[],
            ),
        ];
        for (what, records, expected) in cases {
            let mut gaps = RequestGaps::default();
            for (session, action, id) in *records {
                gaps.see(&record(session, action, *id));
            }
            let expected: Vec<SessionGaps> = expected
                .iter()
                .map(|(session, missing)| SessionGaps {
                    session_id: (*session).to_owned(),
                    missing: missing.to_vec(),
                    lost: 0,
                })
                .collect();
            assert_eq!(gaps.gaps(), expected, "{what}");
        }
    }

    /// Probe 144: the last requests removed left no gap between two
    /// records, and an escalation's decision removed left its start and
    /// exit to stand for it.
    #[test]
    fn the_end_says_how_many_and_only_a_decision_or_error_counts() {
        let end = |requests: u64| {
            let mut end = record("s", "session-end", None);
            end.session = Some(crate::SessionFields {
                end_reason: "closed".into(),
                requests: Some(requests),
                ..crate::SessionFields::default()
            });
            end
        };
        // (records, the end's count, gaps expected)
        type Case<'a> = (&'a [(&'a str, Option<u64>)], u64, &'a [(u64, u64)]);
        let cases: &[Case] = &[
            (&[("decision", Some(1)), ("decision", Some(2))], 2, &[]),
            (
                &[("decision", Some(1)), ("decision", Some(2))],
                4,
                &[(3, 4)],
            ),
            (
                &[("decision", Some(1)), ("start", Some(2)), ("exit", Some(2))],
                2,
                &[(2, 2)],
            ),
            (&[("error", Some(1)), ("decision", Some(2))], 2, &[]),
            (&[], 0, &[]),
            (&[], 1, &[(1, 1)]),
        ];
        for (records, numbered, expected) in cases {
            let mut gaps = RequestGaps::default();
            gaps.see(&record("s", "session-start", None));
            for (action, id) in *records {
                gaps.see(&record("s", action, *id));
            }
            gaps.see(&end(*numbered));
            let missing: Vec<(u64, u64)> = gaps
                .gaps()
                .into_iter()
                .flat_map(|session| session.missing)
                .collect();
            assert_eq!(missing, *expected, "{records:?}, {numbered} numbered");
        }
    }

    #[test]
    fn records_the_session_says_were_not_written_explain_its_gaps() {
        let mut gaps = RequestGaps::default();
        gaps.see(&record("s", "session-start", None));
        gaps.see(&record("s", "decision", Some(1)));
        gaps.see(&record("s", "decision", Some(3)));
        gaps.see(&record("s", "session-end", None));
        assert_eq!(gaps.gaps().len(), 1);
        gaps.see(&ended_with_lost("s", 1));
        assert_eq!(gaps.gaps(), []);
        // More missing than it lost: some were removed.
        let mut gaps = RequestGaps::default();
        gaps.see(&record("s", "session-start", None));
        gaps.see(&record("s", "decision", Some(1)));
        gaps.see(&record("s", "decision", Some(4)));
        gaps.see(&ended_with_lost("s", 1));
        let found = gaps.gaps();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].count(), found[0].lost), (2, 1));
    }
}
