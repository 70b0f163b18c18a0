//! The exporter's log output on stderr: `--log.format=logfmt` or `json`.
//!
//! logfmt lines have node_exporter's shape, one event a line:
//!
//! ```text
//! ts=2026-11-26T10:00:00.000Z level=info msg="Listening on" address=0.0.0.0:9276 tls=false
//! ```
//!
//! `ts` is UTC with milliseconds, `level` is lower case, `msg` is the event's
//! message, then the event's other fields in the order they were written.
//! A value is quoted when it is empty or holds a space, `=`, `"` or a control
//! character; inside quotes `"` and `\` are escaped with `\`, and newlines,
//! tabs and other control characters as `\n`, `\t`, `\u00XX`. The exporter
//! opens no spans, so span fields are not written.
//!
//! [`Logfmt`] is written by hand (one `FormatEvent` and its field visitor,
//! about 100 lines) because the maintained crate, tracing-logfmt 0.3, writes
//! a different shape: the message as `message=`, nanosecond timestamps, a
//! `target=` on every line; and it brings in the `time` crate, while
//! `humantime`, already a dependency, formats the timestamp.
//!
//! JSON lines are flat, as Prometheus' own JSON logs (Go's `slog`) are: one
//! object a line with `time` (RFC 3339, UTC, milliseconds), `level` (the
//! same lower-case words as logfmt), `msg`, then every other field at the
//! top level in the order it was written, so a log shipper reads `event`
//! or `pid` without unnesting:
//!
//! ```text
//! {"time":"2026-11-26T10:00:00.000Z","level":"info","msg":"listening","address":"0.0.0.0:9276","tls":false}
//! ```
//!
//! Numbers and booleans stay JSON numbers and booleans; everything else is
//! a string. [`Json`] is written here too, beside [`Logfmt`], because
//! tracing-subscriber's JSON format nests fields under `fields` and names
//! the message `message`.

use std::fmt;
use std::time::SystemTime;
use tracing::field::{Field, Visit};
use tracing::{Dispatch, Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The `--log.format` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `ts=... level=info msg="..." key=value`, as node_exporter writes.
    Logfmt,
    /// One flat JSON object a line: `time`, `level`, `msg`, then the fields.
    Json,
}

impl LogFormat {
    /// The format a `--log.format` value names (`logfmt` or `json`).
    pub fn from_name(name: &str) -> Option<LogFormat> {
        match name {
            "logfmt" => Some(LogFormat::Logfmt),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// Sends every event at `level` or more severe to stderr in `format`, for the
/// rest of the process (records of the `log` crate, such as rustls', too).
///
/// # Panics
/// If a global subscriber is already installed: call it once, first thing.
pub fn init(level: Level, format: LogFormat) {
    dispatch(level, format, std::io::stderr, SystemTime::now).init();
}

/// The subscriber [`init`] installs, with its writer and clock swappable for
/// tests.
fn dispatch<W>(level: Level, format: LogFormat, writer: W, clock: fn() -> SystemTime) -> Dispatch
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_max_level(level);
    match format {
        LogFormat::Logfmt => Dispatch::new(builder.event_format(Logfmt { clock }).finish()),
        LogFormat::Json => Dispatch::new(builder.event_format(Json { clock }).finish()),
    }
}

/// Formats one event as a logfmt line (see the module doc).
pub struct Logfmt {
    /// Where `ts` comes from: the system clock, or a fixed time in tests.
    clock: fn() -> SystemTime,
}

impl Default for Logfmt {
    fn default() -> Logfmt {
        Logfmt {
            clock: SystemTime::now,
        }
    }
}

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let ts = humantime::format_rfc3339_millis((self.clock)());
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        write!(writer, "ts={ts} level={level} msg=")?;
        write_value(&mut writer, &fields.message)?;
        writer.write_str(&fields.others)?;
        writer.write_char('\n')
    }
}

/// Formats one event as a flat JSON object (see the module doc).
pub struct Json {
    /// Where `time` comes from: the system clock, or a fixed time in tests.
    clock: fn() -> SystemTime,
}

impl Default for Json {
    fn default() -> Json {
        Json {
            clock: SystemTime::now,
        }
    }
}

impl<S, N> FormatEvent<S, N> for Json
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        let time = humantime::format_rfc3339_millis((self.clock)()).to_string();
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        let mut line = String::with_capacity(128 + fields.others.len());
        line.push_str("{\"time\":");
        push_json_string(&mut line, &time);
        line.push_str(",\"level\":");
        push_json_string(&mut line, &level);
        line.push_str(",\"msg\":");
        push_json_string(&mut line, &fields.message);
        line.push_str(&fields.others);
        line.push_str("}\n");
        writer.write_str(&line)
    }
}

/// An event's message, and its other fields already rendered as
/// `,"key":value` members.
#[derive(Default)]
struct JsonFields {
    message: String,
    others: String,
}

impl JsonFields {
    /// Adds one member whose value is already JSON text; the message (and
    /// `log` crate metadata, as for logfmt) are kept apart.
    fn push_raw(&mut self, field: &Field, json: &str) {
        match field.name() {
            "message" => {}
            name if name.starts_with("log.") => {}
            name => {
                self.others.push(',');
                push_json_string(&mut self.others, name);
                self.others.push(':');
                self.others.push_str(json);
            }
        }
    }

    fn push_text(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
            return;
        }
        let mut json = String::with_capacity(value.len() + 2);
        push_json_string(&mut json, value);
        self.push_raw(field, &json);
    }
}

impl Visit for JsonFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push_text(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push_raw(field, if value { "true" } else { "false" });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push_raw(field, &value.to_string());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push_raw(field, &value.to_string());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        match serde_json::Number::from_f64(value) {
            Some(number) => self.push_raw(field, &number.to_string()),
            // NaN and infinities are no JSON numbers.
            None => self.push_text(field, &value.to_string()),
        }
    }

    /// Every other kind of value, as a string (`%value` with `Display`,
    /// `?value` with `Debug`).
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push_text(field, &format!("{value:?}"));
    }
}

/// Appends `value` as a JSON string (quoted and escaped).
fn push_json_string(out: &mut String, value: &str) {
    // A &str always serializes; the fallback is never taken.
    out.push_str(&serde_json::to_string(value).unwrap_or_else(|_| "\"\"".to_string()));
}

/// An event's message, and its other fields already rendered as
/// ` key=value` pairs.
#[derive(Default)]
struct EventFields {
    message: String,
    others: String,
}

impl EventFields {
    fn push(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            // Metadata of `log` records, which tracing's own formats skip too.
            name if name.starts_with("log.") => {}
            name => {
                self.others.push(' ');
                write_key(&mut self.others, name);
                self.others.push('=');
                // Writing into a String cannot fail.
                let _ = write_value(&mut self.others, value);
            }
        }
    }
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value);
    }

    /// Every other kind of value; `%value` fields arrive here rendered with
    /// `Display`, `?value` ones with `Debug`.
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, &format!("{value:?}"));
    }
}

/// A key may not hold what ends a key or a value; those become `_`.
fn write_key(out: &mut String, key: &str) {
    out.extend(key.chars().map(|c| if needs_quotes(c) { '_' } else { c }));
}

fn needs_quotes(c: char) -> bool {
    c <= ' ' || c == '=' || c == '"' || c.is_control()
}

/// Writes `value` bare when it can be, else quoted and escaped.
fn write_value(out: &mut impl fmt::Write, value: &str) -> fmt::Result {
    if !value.is_empty() && !value.chars().any(needs_quotes) {
        return out.write_str(value);
    }
    out.write_char('"')?;
    for c in value.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if c.is_control() => write!(out, "\\u{:04x}", u32::from(c))?,
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, UNIX_EPOCH};

    /// 2026-11-26T10:00:00.042Z.
    fn fixed_clock() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_795_687_200_042)
    }

    /// A writer that keeps what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// What `emit` logs through the subscriber [`init`] would install.
    fn output(level: Level, format: LogFormat, emit: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let dispatch = dispatch(level, format, move || writer.clone(), fixed_clock);
        tracing::dispatcher::with_default(&dispatch, emit);
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    fn quoted(value: &str) -> String {
        let mut out = String::new();
        write_value(&mut out, value).unwrap();
        out
    }

    #[test]
    fn logfmt_line_has_node_exporters_shape() {
        let text = output(Level::INFO, LogFormat::Logfmt, || {
            let error = std::io::Error::other("permission denied");
            tracing::info!(
                address = "0.0.0.0:9276",
                tls = false,
                watched_tcp = 284,
                "starting unassigned_port_exporter"
            );
            tracing::warn!(backend = "netlink", error = %error, "cannot read the socket table");
        });
        assert_eq!(
            text,
            "ts=2026-11-26T10:00:00.042Z level=info msg=\"starting unassigned_port_exporter\" \
             address=0.0.0.0:9276 tls=false watched_tcp=284\n\
             ts=2026-11-26T10:00:00.042Z level=warn msg=\"cannot read the socket table\" \
             backend=netlink error=\"permission denied\"\n"
        );
    }

    #[test]
    fn logfmt_honours_the_level() {
        let text = output(Level::WARN, LogFormat::Logfmt, || {
            tracing::info!("hidden");
            tracing::debug!("hidden");
            tracing::error!(port = 276, "shown");
        });
        assert_eq!(
            text,
            "ts=2026-11-26T10:00:00.042Z level=error msg=shown port=276\n"
        );
    }

    #[test]
    fn values_are_quoted_only_when_they_must_be() {
        assert_eq!(quoted("netlink"), "netlink");
        assert_eq!(quoted("/proc/1/fd"), "/proc/1/fd");
        assert_eq!(quoted(r"C:\dir"), r"C:\dir");
        assert_eq!(quoted(""), "\"\"");
        assert_eq!(quoted("two words"), "\"two words\"");
        assert_eq!(quoted("a=b"), "\"a=b\"");
        assert_eq!(quoted("say \"hi\""), r#""say \"hi\"""#);
        assert_eq!(quoted("line\nnext\ttab"), r#""line\nnext\ttab""#);
        assert_eq!(
            quoted("back\\slash and space"),
            r#""back\\slash and space""#
        );
        assert_eq!(quoted("bell\u{7}"), r#""bell\u0007""#);
        assert_eq!(quoted("µs"), "µs");
    }

    #[test]
    fn odd_keys_and_debug_values_stay_one_pair() {
        let text = output(Level::INFO, LogFormat::Logfmt, || {
            tracing::info!("key with space" = 1, list = ?vec!["a b"], "m");
        });
        assert_eq!(
            text,
            "ts=2026-11-26T10:00:00.042Z level=info msg=m key_with_space=1 list=\"[\\\"a b\\\"]\"\n"
        );
    }

    #[test]
    fn json_lines_are_flat_as_prometheus_writes_them() {
        let text = output(Level::INFO, LogFormat::Json, || {
            tracing::info!(
                port = 276,
                tls = false,
                address = "0.0.0.0:276",
                "listening"
            );
            let error = std::io::Error::other("say \"no\"\n");
            tracing::warn!(error = %error, ratio = 0.5, delta = -3, "cannot read");
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            r#"{"time":"2026-11-26T10:00:00.042Z","level":"info","msg":"listening","port":276,"tls":false,"address":"0.0.0.0:276"}"#
        );
        let line: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(line["level"], "warn");
        assert_eq!(line["msg"], "cannot read");
        assert_eq!(line["error"], "say \"no\"\n");
        assert_eq!(line["ratio"], 0.5);
        assert_eq!(line["delta"], -3);
        assert!(line.get("fields").is_none() && line.get("message").is_none());
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn json_honours_the_level() {
        let text = output(Level::WARN, LogFormat::Json, || {
            tracing::info!("hidden");
            tracing::error!("shown");
        });
        assert_eq!(
            text,
            "{\"time\":\"2026-11-26T10:00:00.042Z\",\"level\":\"error\",\"msg\":\"shown\"}\n"
        );
    }

    #[test]
    fn format_names_match_the_flag() {
        assert_eq!(LogFormat::from_name("logfmt"), Some(LogFormat::Logfmt));
        assert_eq!(LogFormat::from_name("json"), Some(LogFormat::Json));
        assert_eq!(LogFormat::from_name("text"), None);
    }
}
