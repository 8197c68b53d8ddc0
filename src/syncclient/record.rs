//! One sync log record (`TYPE arg1 [arg2]`), as cyrsync writes it to the
//! state and quarantine files and passes it to the deferral sink.

use std::fmt;

use super::plan::Kind;

/// A record to defer, quarantine or remember: the kind and its arguments,
/// in C's argument order (SEEN/SUB: user, mailbox).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record {
    pub kind: Kind,
    pub arg1: Vec<u8>,
    pub arg2: Option<Vec<u8>>,
}

impl Record {
    pub fn new(kind: Kind, arg1: &[u8], arg2: Option<&[u8]>) -> Self {
        Record {
            kind,
            arg1: arg1.to_vec(),
            arg2: arg2.map(<[u8]>::to_vec),
        }
    }

    /// The record as a sync log line, without the newline, quoted as C's
    /// `sync_quote_name` does (atom, or quoted string with a backslash
    /// before `\ " { }`; empty is `""`). Readable by C's and cyrsync's
    /// readers, so a quarantine file replays with `sync_client -f`.
    pub fn to_line(&self) -> Vec<u8> {
        let mut out = self.kind.record_word().as_bytes().to_vec();
        out.push(b' ');
        quote_into(&mut out, &self.arg1);
        if let Some(a2) = &self.arg2 {
            out.push(b' ');
            quote_into(&mut out, a2);
        }
        out
    }

    /// Parse a line written by [`Record::to_line`] (atoms and quoted
    /// strings only). `None` if it is not one.
    pub fn parse_line(line: &[u8]) -> Option<Record> {
        let mut words = Vec::new();
        let mut i = 0;
        while i < line.len() && words.len() < 4 {
            if line[i] == b'"' {
                let mut w = Vec::new();
                i += 1;
                loop {
                    match *line.get(i)? {
                        b'\\' => {
                            w.push(*line.get(i + 1)?);
                            i += 2;
                        }
                        b'"' => {
                            i += 1;
                            break;
                        }
                        c => {
                            w.push(c);
                            i += 1;
                        }
                    }
                }
                words.push(w);
            } else {
                let end = line[i..]
                    .iter()
                    .position(|&b| b == b' ')
                    .map_or(line.len(), |p| i + p);
                words.push(line[i..end].to_vec());
                i = end;
            }
            if i < line.len() {
                if line[i] != b' ' {
                    return None;
                }
                i += 1;
            }
        }
        let kind = match words.first()?.as_slice() {
            b"MAILBOX" => Kind::Mailbox,
            b"QUOTA" => Kind::Quota,
            b"ANNOTATION" => Kind::Annotation,
            b"SEEN" => Kind::Seen,
            b"SUB" => Kind::Sub,
            b"UNMAILBOX" => Kind::Unmailbox,
            b"META" => Kind::Meta,
            b"USER" => Kind::User,
            b"UNUSER" => Kind::Unuser,
            _ => return None,
        };
        match words.len() {
            2 => Some(Record::new(kind, &words[1], None)),
            3 => Some(Record::new(kind, &words[1], Some(&words[2]))),
            _ => None,
        }
    }
}

/// C's `sync_quote_name`.
pub fn quote_into(out: &mut Vec<u8>, name: &[u8]) {
    let needs = name.is_empty()
        || name
            .iter()
            .any(|c| matches!(c, b'\\' | b'"' | b'{' | b'}' | b' ' | b'\t' | b'(' | b')'));
    if !needs {
        out.extend_from_slice(name);
        return;
    }
    out.push(b'"');
    for &c in name {
        if matches!(c, b'\\' | b'"' | b'{' | b'}') {
            out.push(b'\\');
        }
        out.push(c);
    }
    out.push(b'"');
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
        ] {
            let kind = if a2.is_some() {
                Kind::Seen
            } else {
                Kind::Mailbox
            };
            let r = Record::new(kind, a1, a2);
            assert_eq!(r.to_line(), line);
            assert_eq!(Record::parse_line(line), Some(r));
        }
    }
}
