//! Just enough JSON writing for `/status?format=json` and JSON log lines:
//! string escaping and objects written member by member into one buffer
//! (a report is one allocation, not one per field). Nothing is parsed.

use std::fmt::{Display, Write};

/// `text` as a JSON string literal, quotes included.
pub fn string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    write_string(&mut out, text);
    out
}

/// Appends `text` to `out` as a JSON string literal, quotes included.
pub fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
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

/// A JSON object being appended to a buffer: `{`, then members in the
/// order written, then `}` on `end`.
pub struct Object<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> Object<'a> {
    pub fn new(out: &'a mut String) -> Object<'a> {
        out.push('{');
        Object { out, empty: true }
    }

    fn key(&mut self, key: &str) -> &mut String {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        write_string(self.out, key);
        self.out.push(':');
        self.out
    }

    /// A member whose value is a string.
    pub fn string(&mut self, key: &str, value: &str) {
        write_string(self.key(key), value);
    }

    /// A string member, or `null`.
    pub fn string_or_null(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(value) => self.string(key, value),
            None => self.key(key).push_str("null"),
        }
    }

    /// A member written as `value` displays: a number or a boolean.
    pub fn value(&mut self, key: &str, value: impl Display) {
        let _ = write!(self.key(key), "{value}");
    }

    pub fn end(self) {
        self.out.push('}');
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_what_json_requires() {
        assert_eq!(
            super::string("a\"b\\c\nd\u{1}é"),
            "\"a\\\"b\\\\c\\nd\\u0001é\""
        );
    }

    #[test]
    fn objects_are_written_member_by_member() {
        let mut out = String::from("[");
        let mut object = super::Object::new(&mut out);
        object.string("a", "x\"");
        object.value("n", 7);
        object.string_or_null("r", None);
        object.value("b", true);
        object.end();
        super::Object::new(&mut out).end();
        assert_eq!(out, r#"[{"a":"x\"","n":7,"r":null,"b":true}{}"#);
    }
}
