//! Where log lines go, and the guarantee that nothing logged can forge or split a line: a
//! value from a client or a plugin (a locale, an error message) may hold a newline followed
//! by text that looks like another log line. Text lines are written through
//! [`EscapingWriter`], which escapes every control character inside a line; JSON lines
//! (`--log-format json`, one object per line) escape them by construction.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

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
    // Branch-free over the bytes so the compiler vectorizes it: every line is scanned and
    // almost none needs escaping.
    let any_control = body.iter().fold(false, |found, &byte| {
        found
            | ((byte < 0x20) & (byte != b'\t') & !(keep_escape_sequences & (byte == 0x1b)))
            | (byte == 0x7f)
    });
    if !any_control {
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

/// The text line on a terminal: tracing-subscriber's default format with its colours, every
/// field value (the message, event and span fields) escaped by [`TerminalFields`] before it
/// joins the line. On a terminal the [`EscapingWriter`] must let the formatter's colour codes
/// through, so it cannot tell them from an ESC in a value; the values are escaped here instead,
/// and the only escape sequences on the line are the formatter's own.
pub fn terminal_text_subscriber<W>(
    filter: tracing_subscriber::EnvFilter,
    make_writer: W,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'writer> tracing_subscriber::fmt::MakeWriter<'writer> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(true)
        .fmt_fields(TerminalFields)
        .with_writer(make_writer)
        .finish()
}

/// Fields as tracing-subscriber's default formats them (the message as it is, then
/// ` name=value`, names in italics and `=` dimmed when colours are on), each value written
/// through [`EscapedControls`]: an ESC in a file name or a provider's error body shows as the
/// text `\x1b` and never reaches the terminal as an escape sequence.
pub struct TerminalFields;

impl<'writer> FormatFields<'writer> for TerminalFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = TerminalFieldVisitor {
            colours: writer.has_ansi_escapes(),
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

const ITALIC: &str = "\x1b[3m";
const DIMMED: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

struct TerminalFieldVisitor<'writer> {
    writer: Writer<'writer>,
    colours: bool,
    first: bool,
    result: std::fmt::Result,
}

impl Visit for TerminalFieldVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            if !std::mem::take(&mut self.first) {
                self.writer.write_char(' ')?;
            }
            if field.name() != "message" {
                let name = field.name();
                let name = name.strip_prefix("r#").unwrap_or(name);
                if self.colours {
                    write!(self.writer, "{ITALIC}{name}{RESET}{DIMMED}={RESET}")?;
                } else {
                    write!(self.writer, "{name}=")?;
                }
            }
            write!(EscapedControls(&mut self.writer), "{value:?}")
        })();
    }
}

/// Writes through to `0` with every control character escaped: `\n`, `\r`, `\xNN` as
/// [`escape_line`] writes them (a tab stays), and the C1 controls (`\u{9b}` is a terminal's
/// one-character CSI) as `\u{NN}`.
struct EscapedControls<'a, W: std::fmt::Write>(&'a mut W);

impl<W: std::fmt::Write> std::fmt::Write for EscapedControls<'_, W> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let mut clean_from = 0;
        for (index, character) in text.char_indices() {
            let is_control = (character.is_control() && character != '\t') || character == '\u{7f}';
            if !is_control {
                continue;
            }
            self.0.write_str(&text[clean_from..index])?;
            match character {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                character if (character as u32) < 0x80 => {
                    write!(self.0, "\\x{:02x}", character as u32)?
                }
                character => write!(self.0, "\\u{{{:x}}}", character as u32)?,
            }
            clean_from = index + character.len_utf8();
        }
        self.0.write_str(&text[clean_from..])
    }
}

/// The text line when colours are off (a log file, a pipe): the same line as
/// tracing-subscriber's default format (`2026-11-27T10:00:00.123456Z  INFO target: message
/// key=value ...`, span context included), written without its styling machinery and with
/// the date formatted once a second: every send writes one line, and the default format spent
/// about 9,000 instructions a line on empty ANSI styles and the timestamp alone.
pub struct PlainTextFormat;

impl<S, N> FormatEvent<S, N> for PlainTextFormat
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        write_timestamp(&mut writer, SystemTime::now())?;
        let metadata = event.metadata();
        let level = match *metadata.level() {
            tracing::Level::TRACE => "TRACE",
            tracing::Level::DEBUG => "DEBUG",
            tracing::Level::INFO => " INFO",
            tracing::Level::WARN => " WARN",
            tracing::Level::ERROR => "ERROR",
        };
        writer.write_str(" ")?;
        writer.write_str(level)?;
        writer.write_str(" ")?;
        if let Some(scope) = context.event_scope() {
            for span in scope.from_root() {
                writer.write_str(span.metadata().name())?;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        write!(writer, "{{{fields}}}")?;
                    }
                }
                writer.write_char(':')?;
            }
            writer.write_char(' ')?;
        }
        writer.write_str(metadata.target())?;
        writer.write_str(": ")?;
        let mut fields = PlainFields {
            writer: &mut writer,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// `message` first as it is, then ` name=value`: strings quoted and escaped (`Debug`), other
/// values as they format themselves, as tracing-subscriber's default fields do.
struct PlainFields<'writer, 'line> {
    writer: &'writer mut Writer<'line>,
    first: bool,
    result: std::fmt::Result,
}

impl PlainFields<'_, '_> {
    fn separate(&mut self) -> std::fmt::Result {
        if self.first {
            self.first = false;
            Ok(())
        } else {
            self.writer.write_char(' ')
        }
    }

    fn name(field: &Field) -> &str {
        let name = field.name();
        name.strip_prefix("r#").unwrap_or(name)
    }
}

impl Visit for PlainFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        self.result = self.separate().and_then(|()| {
            if field.name() == "message" {
                self.writer.write_str(value)
            } else {
                write!(self.writer, "{}={value:?}", Self::name(field))
            }
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        self.result = self.separate().and_then(|()| {
            if field.name() == "message" {
                write!(self.writer, "{value:?}")
            } else {
                write!(self.writer, "{}={value:?}", Self::name(field))
            }
        });
    }
}

thread_local! {
    /// The formatted second (`2026-11-27T10:00:00`) and which second it is: a thread writes
    /// many lines a second and the date changes once.
    static FORMATTED_SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// RFC 3339 in UTC with microseconds, as tracing-subscriber's `SystemTime` timer writes it.
fn write_timestamp(writer: &mut Writer<'_>, now: SystemTime) -> std::fmt::Result {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let second = since_epoch.as_secs();
    FORMATTED_SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != second {
            cached.1.clear();
            write_utc_second(&mut cached.1, second)?;
            cached.0 = second;
        }
        writer.write_str(&cached.1)
    })?;
    let micros = since_epoch.subsec_micros();
    let mut digits = *b".000000Z";
    let mut remaining = micros;
    for position in (1..7).rev() {
        digits[position] = b'0' + (remaining % 10) as u8;
        remaining /= 10;
    }
    writer.write_str(std::str::from_utf8(&digits).map_err(|_| std::fmt::Error)?)
}

/// `YYYY-MM-DDTHH:MM:SS` for seconds since the Unix epoch (Howard Hinnant's civil-from-days).
fn write_utc_second(text: &mut String, seconds: u64) -> std::fmt::Result {
    let days = (seconds / 86_400) as i64;
    let second_of_day = seconds % 86_400;
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    write!(
        text,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_the_utc_calendar_dates() {
        for (seconds, expected) in [
            (0, "1970-01-01T00:00:00"),
            (951_782_400, "2000-02-29T00:00:00"),
            (1_798_761_599, "2026-12-31T23:59:59"),
            (1_795_777_201, "2026-11-27T11:00:01"),
            (4_107_542_400, "2100-03-01T00:00:00"),
        ] {
            let mut text = String::new();
            write_utc_second(&mut text, seconds).unwrap();
            assert_eq!(text, expected, "{seconds}");
        }
    }

    /// The line is the default format's line, without colours: what operators and log
    /// pipelines parsed before stays parseable.
    #[test]
    fn a_line_reads_as_the_default_format_writes_it() {
        fn emit(subscriber: impl tracing::Subscriber + Send + Sync + 'static) {
            tracing::subscriber::with_default(subscriber, || {
                let span = tracing::info_span!("send", connector_id = %"abc", attempt = 2);
                let _entered = span.enter();
                tracing::info!(phone = %"***0123", purpose = "message", latency_ms = 3u64, raw = ?Some("x\"y"), "sent");
                tracing::warn!("plain message");
            })
        }
        let ours = Lines::default();
        emit(
            tracing_subscriber::fmt()
                .with_ansi(false)
                .event_format(PlainTextFormat)
                .with_writer(ours.clone())
                .finish(),
        );
        let default = Lines::default();
        emit(
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(default.clone())
                .finish(),
        );
        let without_timestamps = |lines: &Lines| -> Vec<String> {
            lines
                .text()
                .lines()
                .map(|line| {
                    let (timestamp, rest) = line.split_once(' ').unwrap();
                    assert!(
                        timestamp.len() == 27 && timestamp.ends_with('Z'),
                        "{timestamp}"
                    );
                    rest.to_owned()
                })
                .collect()
        };
        assert_eq!(without_timestamps(&ours), without_timestamps(&default));
        assert_eq!(without_timestamps(&ours).len(), 2);
    }

    #[test]
    fn a_value_cannot_start_a_new_line() {
        let forged = b"2026-11-27T04:30:01Z WARN send failed reason=no template for y\n2026-11-27T04:30:01.000000Z ERROR connector_host::forged: injected\n";
        let escaped = escape_line(forged, false);
        let text = String::from_utf8(escaped.to_vec()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("y\\n2026-11-27T04:30:01.000000Z ERROR connector_host::forged"));
        assert!(text.ends_with('\n'));
    }

    /// On a terminal an ESC from a value (a plugin file name, a provider's error body) is
    /// written as the text `\x1b`, in the message, event fields and span fields alike, while
    /// the formatter's own colour codes reach the terminal.
    #[test]
    fn on_a_terminal_values_are_escaped_and_only_the_formatter_colours() {
        let lines = Lines::default();
        let subscriber = terminal_text_subscriber(tracing_subscriber::EnvFilter::new("info"), {
            let lines = lines.clone();
            move || EscapingWriter::new(lines.clone(), true)
        });
        let erase = "\x1b[2J\x1b[1A\x1b]0;owned\x07\u{9b}31m";
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("reconcile", folder = %format!("plugins{erase}"));
            let _entered = span.enter();
            tracing::warn!(
                path = %format!("/plugins/lib{erase}x.so"),
                reason = ?format!("bad{erase}"),
                "plugin rejected: {}",
                format!("message{erase}")
            );
        });
        let output = lines.text();
        assert_eq!(output.lines().count(), 1, "{output:?}");
        // The formatter's colours: the WARN level in yellow, field names in italics.
        assert!(output.contains("\x1b[33m WARN"), "{output:?}");
        assert!(output.contains("\x1b[3mpath\x1b[0m"), "{output:?}");
        // Every value's ESC is text, in the message, the fields and the span's fields.
        for escaped in [
            "message\\x1b[2J\\x1b[1A\\x1b]0;owned\\x07\\u{9b}31m",
            "path=/plugins/lib\\x1b[2J",
            "folder=plugins\\x1b[2J",
            "bad\\u{1b}[2J",
        ] {
            assert!(
                strip_formatter_colours(&output).contains(escaped),
                "{escaped:?} not in {output:?}"
            );
        }
        // No raw ESC but the formatter's SGR colour codes (`ESC [ digits ; m`).
        assert!(
            !strip_formatter_colours(&output).contains(['\x1b', '\x07', '\u{9b}']),
            "{output:?}"
        );
    }

    /// `text` without the SGR sequences (`ESC [ 0-9; m`) a formatter writes for colours.
    fn strip_formatter_colours(text: &str) -> String {
        let mut stripped = String::new();
        let mut rest = text;
        while let Some(start) = rest.find('\x1b') {
            stripped.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let sequence_length = after.strip_prefix('[').and_then(|parameters| {
                let digits = parameters
                    .find(|character: char| !character.is_ascii_digit() && character != ';')?;
                (parameters[digits..].starts_with('m')).then_some(1 + digits + 1)
            });
            match sequence_length {
                Some(length) => rest = &after[length..],
                None => {
                    stripped.push('\x1b');
                    rest = after;
                }
            }
        }
        stripped.push_str(rest);
        stripped
    }

    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl Lines {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }
    impl Write for Lines {
        fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buffer);
            Ok(buffer.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
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
