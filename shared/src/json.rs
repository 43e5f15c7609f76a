//! A small JSON reader and writer for the page.
//!
//! Why not serde here: in the page's `.wasm`, serde's derives for the protocol and serde_json's
//! generic reader were about 100 KB of 500 KB (measured with `twiggy top`), because every
//! field of every message is its own monomorphised visitor. This reader is one non-generic
//! function set: it builds a [`Value`] tree, and `page_codec` maps that onto the protocol types.
//! Numbers stay text until a field asks for an integer, so no float parsing is linked in. The hub
//! keeps serde (`codec.rs`); `page_codec`'s tests check this side against serde for every
//! message.

/// A parsed JSON value. Objects keep their keys in order (they are small: a message's fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Bool(bool),
    /// The number as written (`-12`, `3.5e2`): read as an integer where one is wanted.
    Number(String),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

/// serde_json's recursion limit, so both sides refuse the same deeply nested frames.
const MAX_DEPTH: usize = 128;

/// Parses one JSON text (surrounding whitespace allowed, nothing after it).
pub fn parse(text: &str) -> Result<Value, String> {
    let mut parser = Parser { text, bytes: text.as_bytes(), pos: 0 };
    parser.skip_whitespace();
    let value = parser.value(0)?;
    parser.skip_whitespace();
    if parser.pos != parser.bytes.len() {
        return Err(parser.error("trailing characters"));
    }
    Ok(value)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        format!("{what} at byte {}", self.pos)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        self.pos += usize::from(found);
        found
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth >= MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                let mut fields = Vec::new();
                self.skip_whitespace();
                if self.eat(b'}') {
                    return Ok(Value::Object(fields));
                }
                loop {
                    self.skip_whitespace();
                    if self.peek() != Some(b'"') {
                        return Err(self.error("expected a key"));
                    }
                    let key = self.string()?;
                    self.skip_whitespace();
                    if !self.eat(b':') {
                        return Err(self.error("expected `:`"));
                    }
                    self.skip_whitespace();
                    fields.push((key, self.value(depth + 1)?));
                    self.skip_whitespace();
                    if self.eat(b'}') {
                        return Ok(Value::Object(fields));
                    }
                    if !self.eat(b',') {
                        return Err(self.error("expected `,` or `}`"));
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                self.skip_whitespace();
                if self.eat(b']') {
                    return Ok(Value::Array(items));
                }
                loop {
                    self.skip_whitespace();
                    items.push(self.value(depth + 1)?);
                    self.skip_whitespace();
                    if self.eat(b']') {
                        return Ok(Value::Array(items));
                    }
                    if !self.eat(b',') {
                        return Err(self.error("expected `,` or `]`"));
                    }
                }
            }
            Some(b'"') => self.string().map(Value::String),
            Some(b't') => self.word("true", Value::Bool(true)),
            Some(b'f') => self.word("false", Value::Bool(false)),
            Some(b'n') => self.word("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.error("expected a value")),
        }
    }

    fn word(&mut self, word: &str, value: Value) -> Result<Value, String> {
        if !self.bytes[self.pos..].starts_with(word.as_bytes()) {
            return Err(self.error("expected a value"));
        }
        self.pos += word.len();
        Ok(value)
    }

    fn digits(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        self.pos > start
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.pos;
        self.eat(b'-');
        let int_start = self.pos;
        if !self.digits() || (self.bytes[int_start] == b'0' && self.pos - int_start > 1) {
            return Err(self.error("invalid number"));
        }
        if self.eat(b'.') && !self.digits() {
            return Err(self.error("invalid number"));
        }
        if self.eat(b'e') || self.eat(b'E') {
            let _sign = self.eat(b'+') || self.eat(b'-');
            if !self.digits() {
                return Err(self.error("invalid number"));
            }
        }
        Ok(Value::Number(self.text[start..self.pos].to_owned()))
    }

    /// A string, from its opening quote (at `pos`) to past its closing one.
    fn string(&mut self) -> Result<String, String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while self.peek().is_some_and(|b| b != b'"' && b != b'\\' && b >= 0x20) {
                self.pos += 1;
            }
            // the scan stops only at ASCII bytes, so both ends are character boundaries
            out.push_str(&self.text[start..self.pos]);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let escaped = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => self.unicode_escape()?,
                        _ => return Err(self.error("invalid escape")),
                    };
                    self.pos += 1;
                    out.push(escaped);
                }
                _ => return Err(self.error("unterminated string or control character in it")),
            }
        }
    }

    /// `\uXXXX` (with `pos` on the `u`), or a surrogate pair `\uD83D\uDE00`; leaves `pos` on the
    /// last hex digit.
    fn unicode_escape(&mut self) -> Result<char, String> {
        let high = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&high) {
            if !self.bytes[self.pos + 1..].starts_with(b"\\u") {
                return Err(self.error("lone surrogate"));
            }
            self.pos += 2;
            let low = self.hex4()?;
            if !(0xDC00..0xE000).contains(&low) {
                return Err(self.error("lone surrogate"));
            }
            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        } else {
            high
        };
        char::from_u32(code).ok_or_else(|| self.error("lone surrogate"))
    }

    /// The four hex digits after the `u` at `pos`; leaves `pos` on the last one.
    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self.bytes.get(self.pos + 1..self.pos + 5).ok_or_else(|| self.error("short \\u escape"))?;
        let mut code = 0;
        for &digit in digits {
            let nibble = (digit as char).to_digit(16).ok_or_else(|| self.error("invalid \\u escape"))?;
            code = code * 16 + nibble;
        }
        self.pos += 4;
        Ok(code)
    }
}

/// Appends `text` as a JSON string literal.
pub fn write_str(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str("\\u00");
                out.push(HEX[(c as usize) >> 4] as char);
                out.push(HEX[(c as usize) & 0xf] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes one JSON object, field by field, in the order given.
#[derive(Debug)]
pub struct ObjectWriter {
    out: String,
}

impl Default for ObjectWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl ObjectWriter {
    pub fn new() -> Self {
        ObjectWriter { out: String::from("{") }
    }

    fn key(&mut self, key: &str) -> &mut String {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        write_str(&mut self.out, key);
        self.out.push(':');
        &mut self.out
    }

    /// A field whose value is already JSON text.
    pub fn raw(mut self, key: &str, json: &str) -> Self {
        self.key(key).push_str(json);
        self
    }

    pub fn str(mut self, key: &str, value: &str) -> Self {
        write_str(self.key(key), value);
        self
    }

    /// The field only when there is a value (the protocol leaves absent options out).
    pub fn opt_str(self, key: &str, value: Option<&str>) -> Self {
        match value {
            Some(value) => self.str(key, value),
            None => self,
        }
    }

    pub fn u64(self, key: &str, value: u64) -> Self {
        let text = value.to_string();
        self.raw(key, &text)
    }

    pub fn opt_u64(self, key: &str, value: Option<u64>) -> Self {
        match value {
            Some(value) => self.u64(key, value),
            None => self,
        }
    }

    pub fn i64(self, key: &str, value: i64) -> Self {
        let text = value.to_string();
        self.raw(key, &text)
    }

    pub fn bool(self, key: &str, value: bool) -> Self {
        self.raw(key, if value { "true" } else { "false" })
    }

    pub fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

/// A JSON array of strings.
pub fn str_array<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::from("[");
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(&mut out, item);
    }
    out.push(']');
    out
}

/// Takes fields out of a parsed object by name, with typed readers that say what was wrong.
#[derive(Debug)]
pub struct Fields(Vec<(String, Value)>);

impl Fields {
    /// The object's fields, or `None` for any other value.
    pub fn of(value: Value) -> Option<Fields> {
        match value {
            Value::Object(fields) => Some(Fields(fields)),
            _ => None,
        }
    }

    /// The field's value, taken out; `None` when absent or `null` (as serde's `default` reads it).
    pub fn take(&mut self, key: &str) -> Option<Value> {
        let at = self.0.iter().position(|(k, _)| k == key)?;
        match self.0.swap_remove(at).1 {
            Value::Null => None,
            value => Some(value),
        }
    }

    /// A string field, left in place (the request id an error reply echoes).
    pub fn peek_str(&self, key: &str) -> Option<&str> {
        self.0.iter().find_map(|(k, v)| match v {
            Value::String(s) if k == key => Some(s.as_str()),
            _ => None,
        })
    }

    pub fn required(&mut self, key: &str) -> Result<Value, String> {
        self.take(key).ok_or_else(|| format!("missing field `{key}`"))
    }

    pub fn string(&mut self, key: &str) -> Result<String, String> {
        let value = self.required(key)?;
        as_string(value, key)
    }

    pub fn opt_string(&mut self, key: &str) -> Result<Option<String>, String> {
        self.take(key).map(|value| as_string(value, key)).transpose()
    }

    pub fn u64(&mut self, key: &str) -> Result<u64, String> {
        let value = self.required(key)?;
        as_u64(&value, key)
    }

    pub fn opt_u64(&mut self, key: &str) -> Result<Option<u64>, String> {
        self.take(key).map(|value| as_u64(&value, key)).transpose()
    }

    pub fn i64(&mut self, key: &str) -> Result<i64, String> {
        match self.required(key)? {
            Value::Number(n) => n.parse().map_err(|_| wrong(key, "a signed 64-bit integer")),
            _ => Err(wrong(key, "an integer")),
        }
    }

    pub fn bool(&mut self, key: &str) -> Result<bool, String> {
        match self.required(key)? {
            Value::Bool(b) => Ok(b),
            _ => Err(wrong(key, "true or false")),
        }
    }

    /// A flag that is false when absent or `null`.
    pub fn opt_bool(&mut self, key: &str) -> Result<bool, String> {
        match self.take(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(b),
            Some(_) => Err(wrong(key, "true or false")),
        }
    }

    /// A list field; absent or `null` is empty.
    pub fn list(&mut self, key: &str) -> Result<Vec<Value>, String> {
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items),
            Some(_) => Err(wrong(key, "a list")),
        }
    }

    /// A list of strings; absent or `null` is empty.
    pub fn strings(&mut self, key: &str) -> Result<Vec<String>, String> {
        self.list(key)?.into_iter().map(|item| as_string(item, key)).collect()
    }
}

fn wrong(key: &str, wanted: &str) -> String {
    format!("field `{key}` is not {wanted}")
}

fn as_string(value: Value, key: &str) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s),
        _ => Err(wrong(key, "a string")),
    }
}

fn as_u64(value: &Value, key: &str) -> Result<u64, String> {
    match value {
        Value::Number(n) => n.parse().map_err(|_| wrong(key, "an unsigned 64-bit integer")),
        _ => Err(wrong(key, "an integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_serde_json_reads() {
        let texts = [
            r#"{"a":1,"b":[true,false,null],"c":{"d":"e"},"f":-0.5e3}"#,
            r#"  [ "x" , { } , [ ] ]  "#,
            r#""caf\u00e9 \ud83d\ude00 \"q\" \\ \/ \b\f\n\r\t""#,
            "\"ünïcödé 😀 text\"",
            "0",
            "-12",
        ];
        for text in texts {
            let ours = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let theirs: serde_json::Value = serde_json::from_str(text).expect("valid");
            assert_eq!(to_serde(&ours), theirs, "{text}");
        }
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        for text in [
            "",
            "{",
            "[1,]",
            "{\"a\":}",
            "{\"a\" 1}",
            "01",
            "1.",
            "-",
            "tru",
            "\"\\x\"",
            "\"open",
            "\"\\ud800\"",
            "\"\\ud800\\u0041\"",
            "\"\u{1}\"",
            "{} x",
            "{1:2}",
            &deep,
        ] {
            assert!(parse(text).is_err(), "{text:?} was accepted");
            assert!(serde_json::from_str::<serde_json::Value>(text).is_err(), "{text:?}: serde_json accepts it");
        }
    }

    #[test]
    fn writes_strings_serde_json_reads_back() {
        for text in ["plain", "quote \" backslash \\ slash /", "lines\n\r\t", "\u{1}\u{1f}\u{7f}", "😀 ünï"] {
            let mut out = String::new();
            write_str(&mut out, text);
            assert_eq!(serde_json::from_str::<String>(&out).expect("valid JSON"), text);
        }
        let object = ObjectWriter::new().str("a", "b").opt_str("n", None).i64("i", -5).bool("t", true).finish();
        assert_eq!(object, r#"{"a":"b","i":-5,"t":true}"#);
    }

    fn to_serde(value: &Value) -> serde_json::Value {
        match value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Number(n) => serde_json::from_str(n).expect("a number"),
            Value::String(s) => s.clone().into(),
            Value::Array(items) => items.iter().map(to_serde).collect(),
            Value::Object(fields) => fields.iter().map(|(k, v)| (k.clone(), to_serde(v))).collect(),
        }
    }
}
