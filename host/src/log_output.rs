//! Where log lines go, and the guarantee that nothing logged can forge or split a line: a
//! value from a client or a plugin (a locale, an error message) may hold a newline followed
//! by text that looks like another log line. Text lines are written through
//! [`EscapingWriter`], which escapes every control character inside a line; JSON lines
//! (`--log-format json`, one object per line) escape them by construction.

use std::io::{self, Write};

/// The log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `timestamp LEVEL target: message field=value ...`, one line per event.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Escapes control characters inside each formatted line: a line's own final newline stays,
/// any other newline, carriage return or control byte becomes `\n`, `\r` or `\xNN`. The
/// formatter hands over one whole line per write. `keep_escape_sequences` lets the colour
/// codes of a terminal through.
pub struct EscapingWriter<W> {
    inner: W,
    keep_escape_sequences: bool,
}

impl<W: Write> EscapingWriter<W> {
    pub fn new(inner: W, keep_escape_sequences: bool) -> Self {
        Self {
            inner,
            keep_escape_sequences,
        }
    }
}

/// `line` with its control characters escaped; a trailing newline is kept as it is.
pub fn escape_line(line: &[u8], keep_escape_sequences: bool) -> std::borrow::Cow<'_, [u8]> {
    let (body, ending): (&[u8], &[u8]) = match line.strip_suffix(b"\n") {
        Some(body) => (body, b"\n"),
        None => (line, b""),
    };
    let needs_escaping = |byte: u8| {
        (byte < 0x20 && byte != b'\t' && !(keep_escape_sequences && byte == 0x1b)) || byte == 0x7f
    };
    if !body.iter().copied().any(needs_escaping) {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut escaped = Vec::with_capacity(line.len() + 16);
    for &byte in body {
        match byte {
            b'\n' => escaped.extend_from_slice(b"\\n"),
            b'\r' => escaped.extend_from_slice(b"\\r"),
            byte if needs_escaping(byte) => {
                escaped.extend_from_slice(format!("\\x{byte:02x}").as_bytes())
            }
            byte => escaped.push(byte),
        }
    }
    escaped.extend_from_slice(ending);
    std::borrow::Cow::Owned(escaped)
}

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        self.inner
            .write_all(&escape_line(buffer, self.keep_escape_sequences))?;
        Ok(buffer.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_cannot_start_a_new_line() {
        let forged = b"2026-11-27T04:30:01Z WARN send failed reason=no template for y\n2026-11-27T04:30:01.000000Z ERROR connector_host::forged: injected\n";
        let escaped = escape_line(forged, false);
        let text = String::from_utf8(escaped.to_vec()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("y\\n2026-11-27T04:30:01.000000Z ERROR connector_host::forged"));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn control_characters_are_escaped_and_colours_kept_only_on_request() {
        assert_eq!(
            &*escape_line(b"a\rb\x1b[31mc\x7f\n", false),
            b"a\\rb\\x1b[31mc\\x7f\n"
        );
        assert_eq!(&*escape_line(b"a\x1b[31mc\n", true), b"a\x1b[31mc\n");
        assert_eq!(&*escape_line(b"plain\ttext\n", false), b"plain\ttext\n");
    }
}
