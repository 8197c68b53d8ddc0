//! A small JSON writer: the CLI is built with the static library's
//! package, whose only dependencies are libc, log and memmap2, so JSON is
//! written by hand.
//!
//! Names (mailboxes, users, channels, paths, sync log records) are bytes,
//! not necessarily UTF-8. [`Json::bytes`] writes them as journald's JSON
//! export does: a string when they are valid UTF-8, otherwise an array of
//! the byte values (integers 0-255). Nothing is lost and every strict JSON
//! parser reads the output.

use std::fmt::Write as _;

/// A JSON text under construction. Commas are placed automatically: every
/// value written after another in the same object or array is preceded by
/// one.
#[derive(Default)]
pub struct Json {
    out: String,
    /// One entry per open object/array: whether it has a member yet.
    open: Vec<bool>,
    /// A key was just written: the next value needs no comma.
    after_key: bool,
}

impl Json {
    pub fn new() -> Json {
        Json::default()
    }

    fn comma(&mut self) {
        if self.after_key {
            self.after_key = false;
            return;
        }
        if let Some(has) = self.open.last_mut() {
            if *has {
                self.out.push(',');
            }
            *has = true;
        }
    }

    pub fn begin_object(&mut self) -> &mut Self {
        self.comma();
        self.out.push('{');
        self.open.push(false);
        self
    }

    pub fn end_object(&mut self) -> &mut Self {
        self.open.pop();
        self.out.push('}');
        self
    }

    pub fn begin_array(&mut self) -> &mut Self {
        self.comma();
        self.out.push('[');
        self.open.push(false);
        self
    }

    pub fn end_array(&mut self) -> &mut Self {
        self.open.pop();
        self.out.push(']');
        self
    }

    /// A member's key; its value follows.
    pub fn key(&mut self, k: &str) -> &mut Self {
        self.comma();
        push_str(&mut self.out, k);
        self.out.push(':');
        self.after_key = true;
        self
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        self.comma();
        push_str(&mut self.out, s);
        self
    }

    /// Bytes: a string if valid UTF-8, else an array of byte values.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        match std::str::from_utf8(b) {
            Ok(s) => self.str(s),
            Err(_) => {
                self.begin_array();
                for &byte in b {
                    self.u64(byte.into());
                }
                self.end_array()
            }
        }
    }

    pub fn u64(&mut self, n: u64) -> &mut Self {
        self.comma();
        let _ = write!(self.out, "{n}");
        self
    }

    pub fn i64(&mut self, n: i64) -> &mut Self {
        self.comma();
        let _ = write!(self.out, "{n}");
        self
    }

    pub fn bool(&mut self, b: bool) -> &mut Self {
        self.comma();
        self.out.push_str(if b { "true" } else { "false" });
        self
    }

    pub fn null(&mut self) -> &mut Self {
        self.comma();
        self.out.push_str("null");
        self
    }

    /// `key: n` or `key: null`.
    pub fn opt_u64(&mut self, k: &str, n: Option<u64>) -> &mut Self {
        self.key(k);
        match n {
            Some(n) => self.u64(n),
            None => self.null(),
        }
    }

    /// The text, with a final newline.
    pub fn finish(mut self) -> String {
        debug_assert!(self.open.is_empty(), "unbalanced JSON");
        self.out.push('\n');
        self.out
    }
}

fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_nested_values_with_commas_and_escapes() {
        let mut j = Json::new();
        j.begin_object();
        j.key("a").str("q\"\\\n\u{1}é");
        j.key("b")
            .begin_array()
            .u64(1)
            .i64(-2)
            .bool(true)
            .null()
            .end_array();
        j.key("c").bytes(b"ok").key("d").bytes(b"\xffx");
        j.key("e").begin_object().end_object();
        j.opt_u64("f", None);
        j.end_object();
        assert_eq!(
            j.finish(),
            "{\"a\":\"q\\\"\\\\\\n\\u0001é\",\"b\":[1,-2,true,null],\"c\":\"ok\",\"d\":[255,120],\"e\":{},\"f\":null}\n"
        );
    }
}
