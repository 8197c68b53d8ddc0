//! One sync log record (`TYPE arg1 [arg2]`), as cyrsync defers it to the
//! channel's log, writes it to the state and quarantine files and passes it
//! to the deferral sink.
//!
//! There is one record kind ([`RecordKind`], the sync log's) and one
//! quoter and one parser (the sync log writer's and reader's): a record
//! written here reads back identically through `sync_client -f`.

use std::fmt;

use crate::synclog::{self, format_record, Reader, RecordKind};

/// A record to defer, quarantine or remember: the kind and its arguments,
/// in C's argument order (SEEN/SUB: user, mailbox).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record {
    pub kind: RecordKind,
    pub arg1: Vec<u8>,
    pub arg2: Option<Vec<u8>>,
}

impl Record {
    pub fn new(kind: RecordKind, arg1: &[u8], arg2: Option<&[u8]>) -> Self {
        Record {
            kind,
            arg1: arg1.to_vec(),
            arg2: arg2.map(<[u8]>::to_vec),
        }
    }

    /// The record as a sync log line with its newline, exactly as the sync
    /// log writer writes it (C's `sync_quote_name`, plus quoting of VT and
    /// FF). An error for a name no sync log can hold (CR, LF, NUL, too
    /// long).
    pub fn try_line(&self) -> Result<Vec<u8>, synclog::Error> {
        format_record(self.kind, &self.arg1, self.arg2.as_deref())
    }

    /// The line without its newline: the key of the record in `log-state`
    /// and its text in messages. A record no log can hold (see
    /// [`Record::try_line`]) gets its bytes escaped instead.
    pub fn to_line(&self) -> Vec<u8> {
        match self.try_line() {
            Ok(mut line) => {
                line.pop();
                line
            }
            Err(_) => {
                let mut out = self.kind.word().as_bytes().to_vec();
                for a in std::iter::once(&self.arg1).chain(&self.arg2) {
                    out.push(b' ');
                    out.extend(a.escape_ascii());
                }
                out
            }
        }
    }

    /// Parse one line (without or with its newline) with the sync log
    /// reader. `None` if it is not exactly one record of a kind sync_client
    /// defers.
    pub fn parse_line(line: &[u8]) -> Option<Record> {
        let mut content = line.to_vec();
        if content.last() != Some(&b'\n') {
            content.push(b'\n');
        }
        let mut reader = Reader::for_content(content);
        reader.begin().ok()?;
        let record = {
            let item = reader.next_item()?;
            let kind = RecordKind::from_word(item.kind)?;
            if kind.takes_two() != item.arg2.is_some() {
                return None;
            }
            Record::new(kind, item.arg1, item.arg2)
        };
        if reader.next_item().is_some() || reader.set_aside_count() > 0 {
            return None;
        }
        Some(record)
    }
}

impl fmt::Display for Record {
    /// The line, non-printable bytes escaped (for log messages).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_line().escape_ascii())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips() {
        for (a1, a2, line) in [
            (&b"user.foo"[..], None, &b"MAILBOX user.foo"[..]),
            (b"a b", Some(&b"x\"y"[..]), b"SEEN \"a b\" \"x\\\"y\""),
            (b"", None, b"MAILBOX \"\""),
            (b"{3}", None, b"MAILBOX \"\\{3\\}\""),
            (b"a\x0bb\x0cc", None, b"MAILBOX \"a\x0bb\x0cc\""),
        ] {
            let kind = if a2.is_some() {
                RecordKind::Seen
            } else {
                RecordKind::Mailbox
            };
            let r = Record::new(kind, a1, a2);
            assert_eq!(r.to_line(), line);
            assert_eq!(Record::parse_line(line), Some(r));
        }
    }
}
