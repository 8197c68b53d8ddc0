//! Building sync log records: C's `sync_quote_name` and `va_format`.

use super::{Error, MAX_MAILBOX_BUFFER};

/// The record kinds Cyrus writes (the `sync_log_*` macros of `sync_log.h`).
///
/// The numeric values are the C API's `CYRSYNC_RECORD_*` constants and never
/// change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum RecordKind {
    /// `USER user`
    User = 1,
    /// `UNUSER user`
    Unuser = 2,
    /// `META user` (`sync_log_sieve`)
    Meta = 3,
    /// `APPEND mailbox`
    Append = 4,
    /// `MAILBOX mailbox`
    Mailbox = 5,
    /// `UNMAILBOX mailbox`
    Unmailbox = 6,
    /// `DOUBLEMAILBOX mailbox1 mailbox2`
    DoubleMailbox = 7,
    /// `RENAME old new` followed by `MAILBOX old` and `MAILBOX new`, in one
    /// write.
    Rename = 8,
    /// `QUOTA root`
    Quota = 9,
    /// `ANNOTATION mailbox`
    Annotation = 10,
    /// `SEEN user mailbox`
    Seen = 11,
    /// `SUB user mailbox`
    Sub = 12,
    /// `UNSUB user mailbox`
    Unsub = 13,
}

impl RecordKind {
    /// Convert an integer that came from C.
    pub fn from_u32(value: u32) -> Option<Self> {
        use RecordKind::*;
        Some(match value {
            1 => User,
            2 => Unuser,
            3 => Meta,
            4 => Append,
            5 => Mailbox,
            6 => Unmailbox,
            7 => DoubleMailbox,
            8 => Rename,
            9 => Quota,
            10 => Annotation,
            11 => Seen,
            12 => Sub,
            13 => Unsub,
            _ => return None,
        })
    }

    /// The kind whose type word this is.
    pub fn from_word(word: &[u8]) -> Option<Self> {
        (1..=13)
            .filter_map(Self::from_u32)
            .find(|k| k.word().as_bytes() == word)
    }

    /// The record's type word.
    pub fn word(self) -> &'static str {
        use RecordKind::*;
        match self {
            User => "USER",
            Unuser => "UNUSER",
            Meta => "META",
            Append => "APPEND",
            Mailbox => "MAILBOX",
            Unmailbox => "UNMAILBOX",
            DoubleMailbox => "DOUBLEMAILBOX",
            Rename => "RENAME",
            Quota => "QUOTA",
            Annotation => "ANNOTATION",
            Seen => "SEEN",
            Sub => "SUB",
            Unsub => "UNSUB",
        }
    }

    /// Whether the record takes two names.
    pub fn takes_two(self) -> bool {
        use RecordKind::*;
        matches!(self, DoubleMailbox | Rename | Seen | Sub | Unsub)
    }
}

/// Append `name` to `out` as C's `sync_quote_name` does: an atom when it can
/// be, otherwise a quoted string with `\` before `\ " { }`.
///
/// Differences from C: CR, LF and a quoted form longer than
/// [`MAX_MAILBOX_BUFFER`] are errors instead of `fatal()`; vertical tab and
/// form feed force quoting (C writes them bare, and its reader, which splits
/// atoms on `isspace`, would then cut the name). On error `out` is unchanged.
pub fn push_quoted(out: &mut Vec<u8>, name: &[u8]) -> Result<(), Error> {
    let mut escapes = 0usize;
    let mut need_quote = name.is_empty();
    for &c in name {
        match c {
            b'\r' | b'\n' => return Err(Error::NameHasLineBreak),
            0 => return Err(Error::NameHasNul),
            b'\\' | b'"' | b'{' | b'}' => {
                escapes += 1;
                need_quote = true;
            }
            b' ' | b'\t' | b'(' | b')' | 0x0b | 0x0c => need_quote = true,
            _ => {}
        }
    }
    // C counts the opening quote, every byte and every escape, and fails as
    // soon as that exceeds MAX_MAILBOX_BUFFER.
    let quoted_len = 1 + name.len() + escapes;
    if quoted_len > MAX_MAILBOX_BUFFER {
        return Err(Error::NameTooLong { len: name.len() });
    }
    if !need_quote {
        out.extend_from_slice(name);
        return Ok(());
    }
    out.reserve(quoted_len + 1);
    out.push(b'"');
    if escapes == 0 {
        out.extend_from_slice(name);
    } else {
        for &c in name {
            if matches!(c, b'\\' | b'"' | b'{' | b'}') {
                out.push(b'\\');
            }
            out.push(c);
        }
    }
    out.push(b'"');
    Ok(())
}

/// One argument of a printf-style record: `%s` takes a name (`None`, a C
/// NULL, is written as the empty string `""`, as in C), `%d` an integer.
#[derive(Debug, Clone, Copy)]
pub enum FmtArg<'a> {
    Str(Option<&'a [u8]>),
    Int(i32),
}

/// Expand a `sync_log` format as C's `va_format`: `%s` is a quoted name,
/// `%d` a decimal integer, `%` before any other byte is that byte; a final
/// newline is added when missing.
///
/// Differences from C: no truncation at 4096 bytes; an empty format, a
/// trailing lone `%`, or arguments that do not match the format are errors.
pub fn format_line(fmt: &[u8], args: &[FmtArg<'_>]) -> Result<Vec<u8>, Error> {
    if fmt.is_empty() {
        return Err(Error::BadFormat("empty format"));
    }
    let mut out = Vec::with_capacity(fmt.len() + 64);
    let mut args = args.iter();
    let mut bytes = fmt.iter();
    while let Some(&c) = bytes.next() {
        if c != b'%' {
            out.push(c);
            continue;
        }
        match bytes.next() {
            Some(b's') => match args.next() {
                Some(FmtArg::Str(Some(name))) => push_quoted(&mut out, name)?,
                Some(FmtArg::Str(None)) => out.extend_from_slice(b"\"\""),
                _ => return Err(Error::BadFormat("%s without a string argument")),
            },
            Some(b'd') => match args.next() {
                Some(FmtArg::Int(i)) => out.extend_from_slice(i.to_string().as_bytes()),
                _ => return Err(Error::BadFormat("%d without an integer argument")),
            },
            Some(&other) => out.push(other),
            None => return Err(Error::BadFormat("format ends with a lone %")),
        }
    }
    if args.next().is_some() {
        return Err(Error::BadFormat("more arguments than the format uses"));
    }
    if out.last() != Some(&b'\n') {
        out.push(b'\n');
    }
    Ok(out)
}

/// The line(s) a typed record writes, identical to the `sync_log_*` macros.
pub fn format_record(
    kind: RecordKind,
    name1: &[u8],
    name2: Option<&[u8]>,
) -> Result<Vec<u8>, Error> {
    let name2 = match (kind.takes_two(), name2) {
        (true, Some(n)) => Some(n),
        (true, None) => return Err(Error::BadFormat("record kind takes two names")),
        (false, None) => None,
        (false, Some(_)) => return Err(Error::BadFormat("record kind takes one name")),
    };
    let mut out = Vec::with_capacity(32 + name1.len() + name2.map_or(0, <[u8]>::len));
    out.extend_from_slice(kind.word().as_bytes());
    out.push(b' ');
    push_quoted(&mut out, name1)?;
    if let Some(name2) = name2 {
        out.push(b' ');
        push_quoted(&mut out, name2)?;
    }
    out.push(b'\n');
    if kind == RecordKind::Rename {
        let first_line = out.clone();
        let (old, new) = (name1, name2.unwrap_or_default());
        out.extend_from_slice(b"MAILBOX ");
        push_quoted(&mut out, old)?;
        out.extend_from_slice(b"\nMAILBOX ");
        push_quoted(&mut out, new)?;
        out.push(b'\n');
        debug_assert!(out.starts_with(&first_line));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        push_quoted(&mut v, name).unwrap();
        v
    }

    #[test]
    fn quoting_matches_sync_quote_name() {
        assert_eq!(q(b"user.fred"), b"user.fred");
        assert_eq!(q(b""), b"\"\"");
        assert_eq!(q(b"a b"), b"\"a b\"");
        assert_eq!(q(b"a\tb"), b"\"a\tb\"");
        assert_eq!(q(b"(x)"), b"\"(x)\"");
        assert_eq!(q(br#"a\b"#), br#""a\\b""#);
        assert_eq!(q(br#"say "hi""#), br#""say \"hi\"""#);
        assert_eq!(q(b"{5}"), br#""\{5\}""#);
        assert_eq!(q(b"caf\xc3\xa9&*%"), b"caf\xc3\xa9&*%");
        assert_eq!(q(b"NIL"), b"NIL");
    }

    #[test]
    fn bad_names_are_errors_and_leave_output_alone() {
        let mut out = b"USER ".to_vec();
        assert!(matches!(
            push_quoted(&mut out, b"a\nb"),
            Err(Error::NameHasLineBreak)
        ));
        assert!(matches!(
            push_quoted(&mut out, b"a\rb"),
            Err(Error::NameHasLineBreak)
        ));
        assert!(matches!(
            push_quoted(&mut out, b"a\0b"),
            Err(Error::NameHasNul)
        ));
        assert_eq!(out, b"USER ");
    }

    #[test]
    fn length_limit_is_cs() {
        // 1 (quote) + len + escapes must stay <= 1024.
        assert!(push_quoted(&mut Vec::new(), &[b'a'; 1023]).is_ok());
        assert!(matches!(
            push_quoted(&mut Vec::new(), &[b'a'; 1024]),
            Err(Error::NameTooLong { len: 1024 })
        ));
        let mut escaped = vec![b'a'; 1021];
        escaped.push(b'"');
        assert!(push_quoted(&mut Vec::new(), &escaped).is_ok());
        escaped.insert(0, b'"');
        assert!(push_quoted(&mut Vec::new(), &escaped).is_err());
    }

    #[test]
    fn va_format_semantics() {
        let line = format_line(
            b"SEEN %s %s",
            &[FmtArg::Str(Some(b"fred")), FmtArg::Str(Some(b"a b"))],
        )
        .unwrap();
        assert_eq!(line, b"SEEN fred \"a b\"\n");
        assert_eq!(
            format_line(b"X %d%%\n", &[FmtArg::Int(-7)]).unwrap(),
            b"X -7%\n"
        );
        assert_eq!(
            format_line(b"USER %s\n", &[FmtArg::Str(None)]).unwrap(),
            b"USER \"\"\n"
        );
        assert!(format_line(b"", &[]).is_err());
        assert!(format_line(b"USER %", &[]).is_err());
        assert!(format_line(b"USER %s", &[]).is_err());
        assert!(format_line(b"USER %s", &[FmtArg::Int(1)]).is_err());
        assert!(format_line(b"USER x", &[FmtArg::Int(1)]).is_err());
        let long = vec![b'a'; 1000];
        let args = [FmtArg::Str(Some(&long[..])); 5];
        assert_eq!(format_line(b"%s %s %s %s %s", &args).unwrap().len(), 5005);
    }

    #[test]
    fn records_match_macros() {
        assert_eq!(
            format_record(RecordKind::User, b"fred", None).unwrap(),
            b"USER fred\n"
        );
        assert_eq!(
            format_record(RecordKind::Rename, b"user.a", Some(b"user.b c")).unwrap(),
            b"RENAME user.a \"user.b c\"\nMAILBOX user.a\nMAILBOX \"user.b c\"\n"
        );
        assert_eq!(
            format_record(RecordKind::Seen, b"fred", Some(b"user.fred")).unwrap(),
            b"SEEN fred user.fred\n"
        );
        assert!(format_record(RecordKind::Seen, b"fred", None).is_err());
        assert!(format_record(RecordKind::User, b"fred", Some(b"x")).is_err());
        for v in 1..=13 {
            assert_eq!(RecordKind::from_u32(v).unwrap() as u32, v);
        }
        assert!(RecordKind::from_u32(0).is_none());
        assert!(RecordKind::from_u32(14).is_none());
    }
}
