//! The text exposition (Prometheus text format 0.0.4), written straight from
//! the model into one buffer.
//!
//! Why our own writer: the prometheus crate's path builds a `MetricFamily`
//! protobuf value per family and, per series, a vector of label pairs
//! (two `String`s each), which its `GaugeVec` hashes, clones and sorts by
//! name before the `TextEncoder` walks it again. At 34,000 listeners that was
//! three quarters of a scrape (malloc/free, memcmp, memmove, `Vec::clone`)
//! and 200 MB of short-lived objects, for output that is only text. Here a
//! series is written directly: its label names are fixed and sorted once (at
//! compile time, by the model's `label_set!`: [`SortedLabels`]), each value is
//! escaped as it is copied (no intermediate string), and numbers are
//! formatted into the buffer. `prometheus-client` was weighed: its encoder
//! also writes without a protobuf step, but it keeps a registry of metric
//! objects per label set between scrapes (what issue 24 asks not to keep) and
//! would replace the crate the process metrics, auth counters and kernel
//! event counters use; the prometheus crate stays for those (registry,
//! `process_*`), and its families are written by its own `TextEncoder`
//! into the same buffer ([`Gathered`]).
//!
//! The output is byte-for-byte the same as the prometheus crate's
//! `TextEncoder` for the same family: `# HELP name text` (help escaped for
//! `\` and newline), `# TYPE name gauge|counter`, then one line per series,
//! `name{a="1",b="2"} value` with labels in name order and values escaped
//! for `\`, `"` and newline, and values as Rust's `f64` display writes them
//! (`1`, `0.25`). A family without series is not written at all.
//!
//! [`Render`] is the one interface of the metric rooms: a room names the
//! families it writes and writes one when asked; [`write_sorted`] writes the
//! families of every room in name order, as the prometheus registry orders
//! them, so rooms never sort or copy each other's output.

use crate::model::labels::{LabelRef, SortedLabels};
use prometheus::Encoder;
use prometheus::proto::MetricFamily;
use std::borrow::Cow;
use std::io::Write;

/// The metric type written on a family's `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A metric room: names its families and writes each one on request.
pub trait Render {
    /// Full names of the families this room may write (in any order).
    fn family_names(&self) -> Vec<Cow<'_, str>>;
    /// Writes family `index` of [`Render::family_names`] into `out`
    /// (nothing if it has no series now).
    fn render(&self, index: usize, out: &mut Vec<u8>);
}

/// Writes every family of `rooms` into `out`, in family-name order.
/// Two families of one name would be invalid exposition; the first wins.
pub fn write_sorted(rooms: &[&dyn Render], out: &mut Vec<u8>) {
    let mut order: Vec<(Cow<'_, str>, usize, usize)> = Vec::with_capacity(64);
    for (room, families) in rooms.iter().enumerate() {
        for (index, name) in families.family_names().into_iter().enumerate() {
            order.push((name, room, index));
        }
    }
    order.sort_by(|a, b| a.0.cmp(&b.0));
    order.dedup_by(|later, earlier| later.0 == earlier.0);
    for (_, room, index) in order {
        rooms[room].render(index, out);
    }
}

/// Writes one family: its header at the first series, then series lines.
pub struct Family<'a> {
    out: &'a mut Vec<u8>,
    name: &'a str,
    help: &'a str,
    kind: Kind,
    started: bool,
}

impl<'a> Family<'a> {
    pub fn new(out: &'a mut Vec<u8>, name: &'a str, help: &'a str, kind: Kind) -> Family<'a> {
        Family {
            out,
            name,
            help,
            kind,
            started: false,
        }
    }

    /// Starts one series line: the name, ready for labels.
    pub fn series(&mut self) -> Series<'_> {
        if !self.started {
            self.started = true;
            self.out.extend_from_slice(b"# HELP ");
            self.out.extend_from_slice(self.name.as_bytes());
            self.out.push(b' ');
            escape_into(self.out, self.help, false);
            self.out.extend_from_slice(b"\n# TYPE ");
            self.out.extend_from_slice(self.name.as_bytes());
            self.out.push(b' ');
            self.out.extend_from_slice(self.kind.as_str().as_bytes());
            self.out.push(b'\n');
        }
        self.out.extend_from_slice(self.name.as_bytes());
        Series {
            out: self.out,
            labels: 0,
        }
    }

    /// One series with the labels of a model label set (in name order)
    /// and an integer value.
    pub fn labelled(&mut self, labels: &impl SortedLabels, value: u64) {
        let mut series = self.series();
        labels.for_each_sorted(|name, value| match value {
            LabelRef::Text(text) => {
                series.label(name, text);
            }
            LabelRef::Number(number) => {
                series.label_u64(name, number);
            }
        });
        series.value_u64(value);
    }

    /// One series without labels.
    pub fn single_f64(&mut self, value: f64) {
        self.series().value_f64(value);
    }
}

/// One series line being written: labels, then the value ends it.
pub struct Series<'a> {
    out: &'a mut Vec<u8>,
    labels: usize,
}

impl Series<'_> {
    fn label_start(&mut self, name: &str) {
        self.out.push(if self.labels == 0 { b'{' } else { b',' });
        self.labels += 1;
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"=\"");
    }

    /// `name="value"`, the value escaped.
    pub fn label(&mut self, name: &str, value: &str) -> &mut Self {
        self.label_start(name);
        escape_into(self.out, value, true);
        self.out.push(b'"');
        self
    }

    /// `name="123"`.
    pub fn label_u64(&mut self, name: &str, value: u64) -> &mut Self {
        self.label_start(name);
        write_u64(self.out, value);
        self.out.push(b'"');
        self
    }

    /// `name="true"` or `name="false"`.
    pub fn label_bool(&mut self, name: &str, value: bool) -> &mut Self {
        self.label(name, if value { "true" } else { "false" })
    }

    fn end_labels(&mut self) {
        if self.labels > 0 {
            self.out.push(b'}');
        }
        self.out.push(b' ');
    }

    /// Ends the line with an integer value (as `f64` display would write it
    /// for integers below 2^53).
    pub fn value_u64(mut self, value: u64) {
        self.end_labels();
        write_u64(self.out, value);
        self.out.push(b'\n');
    }

    /// Ends the line with a float value, as the prometheus crate writes it.
    pub fn value_f64(mut self, value: f64) {
        self.end_labels();
        let _ = write!(self.out, "{value}");
        self.out.push(b'\n');
    }
}

/// Decimal digits of `value`.
fn write_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Copies `text` escaping `\` and newline, and `"` in label values.
pub fn escape_into(out: &mut Vec<u8>, text: &str, quotes: bool) {
    let bytes = text.as_bytes();
    let special = |b: u8| b == b'\\' || b == b'\n' || (quotes && b == b'"');
    let mut from = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        if special(byte) {
            out.extend_from_slice(&bytes[from..at]);
            out.extend_from_slice(match byte {
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                _ => b"\\\"",
            });
            from = at + 1;
        }
    }
    out.extend_from_slice(&bytes[from..]);
}

/// Families gathered from a prometheus `Registry` (process metrics, auth
/// and event counters), written by the crate's own `TextEncoder`.
pub struct Gathered(pub Vec<MetricFamily>);

impl Render for Gathered {
    fn family_names(&self) -> Vec<Cow<'_, str>> {
        self.0.iter().map(|f| Cow::Borrowed(f.name())).collect()
    }

    fn render(&self, index: usize, out: &mut Vec<u8>) {
        let family = &self.0[index];
        if family.get_metric().is_empty() {
            return;
        }
        // Only fails for invalid families, which the registry refuses.
        let _ = prometheus::TextEncoder::new().encode(std::slice::from_ref(family), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{GaugeVec, IntCounterVec, Opts, Registry};

    /// The prometheus crate's text for one gauge series with these labels.
    fn theirs(help: &str, labels: &[(&str, &str)], value: f64) -> String {
        let names: Vec<&str> = labels.iter().map(|(n, _)| *n).collect();
        let values: Vec<&str> = labels.iter().map(|(_, v)| *v).collect();
        let gauge = GaugeVec::new(Opts::new("t_gauge", help), &names).unwrap();
        gauge.with_label_values(&values).set(value);
        let registry = Registry::new();
        registry.register(Box::new(gauge)).unwrap();
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    fn ours(help: &str, labels: &[(&str, &str)], value: f64) -> String {
        let mut out = Vec::new();
        let mut family = Family::new(&mut out, "t_gauge", help, Kind::Gauge);
        let mut series = family.series();
        for (name, value) in labels {
            series.label(name, value);
        }
        series.value_f64(value);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn same_bytes_as_the_prometheus_crate() {
        let odd = "a\\b\"c\nd é \\n";
        for (help, labels, value) in [
            ("plain help.", vec![], 1.0),
            (
                "help with \\ and\nnewline and \"quotes\"",
                vec![("a", "x")],
                0.25,
            ),
            ("h", vec![("a", odd), ("b", ""), ("c", "\"")], 1e-9),
            ("h", vec![("x", "1")], 12345678.0),
            ("h", vec![("x", "1")], f64::NAN),
        ] {
            assert_eq!(ours(help, &labels, value), theirs(help, &labels, value));
        }
    }

    #[test]
    fn integers_written_as_f64_display_writes_them() {
        for value in [0u64, 1, 9, 10, 276, 65535, 1 << 40, (1 << 53) - 1] {
            let mut out = Vec::new();
            write_u64(&mut out, value);
            assert_eq!(String::from_utf8(out).unwrap(), (value as f64).to_string());
        }
    }

    #[test]
    fn a_family_without_series_writes_nothing() {
        let mut out = Vec::new();
        Family::new(&mut out, "t", "h", Kind::Counter);
        assert!(out.is_empty());
    }

    struct Room(&'static [&'static str]);

    impl Render for Room {
        fn family_names(&self) -> Vec<Cow<'_, str>> {
            self.0.iter().map(|n| Cow::Borrowed(*n)).collect()
        }
        fn render(&self, index: usize, out: &mut Vec<u8>) {
            Family::new(out, self.0[index], "h", Kind::Gauge).single_f64(1.0);
        }
    }

    #[test]
    fn families_of_all_rooms_come_in_name_order() {
        let counter = IntCounterVec::new(Opts::new("b_total", "h"), &["x"]).unwrap();
        counter.with_label_values(&["1"]).inc();
        let registry = Registry::new();
        registry.register(Box::new(counter)).unwrap();
        let gathered = Gathered(registry.gather());
        let mut out = Vec::new();
        write_sorted(&[&Room(&["c", "a"]), &gathered, &Room(&["a2"])], &mut out);
        let names: Vec<&str> = std::str::from_utf8(&out)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        assert_eq!(names, ["a", "a2", "b_total", "c"]);
    }
}
