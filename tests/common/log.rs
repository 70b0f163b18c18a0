//! The exporter's log as the tests read it: the stderr lines
//! [`super::Exporter`] collects, parsed from logfmt or JSON into key/value
//! maps.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One parsed log line: every key (`ts`/`time`, `level`, `msg` too).
pub type Line = BTreeMap<String, String>;

/// The lines an exporter wrote to stderr so far.
#[derive(Clone)]
pub struct Log {
    lines: Arc<Mutex<Vec<String>>>,
}

impl Log {
    /// A view of the lines an exporter's stderr reader keeps.
    pub fn new(lines: Arc<Mutex<Vec<String>>>) -> Log {
        Log { lines }
    }

    /// Every line so far, raw.
    pub fn raw(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Every line so far, parsed (JSON lines start with `{`).
    pub fn parsed(&self) -> Vec<Line> {
        self.raw().iter().map(|line| parse_line(line)).collect()
    }

    /// Waits until `done` holds for the parsed lines; panics after `limit`
    /// with the last lines.
    pub fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&[Line]) -> bool,
    ) -> Vec<Line> {
        let deadline = Instant::now() + limit;
        loop {
            let lines = self.parsed();
            if done(&lines) {
                return lines;
            }
            if Instant::now() > deadline {
                let raw = self.raw();
                let tail = &raw[raw.len().saturating_sub(20)..];
                panic!(
                    "timed out waiting for {what}; last log lines:\n{}",
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One line, logfmt or JSON.
pub fn parse_line(line: &str) -> Line {
    if line.starts_with('{') {
        parse_json(line)
    } else {
        parse_logfmt(line)
    }
}

/// A flat JSON object; numbers and booleans as their text.
pub fn parse_json(line: &str) -> Line {
    let value: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {line}"));
    object
        .iter()
        .map(|(key, value)| {
            let text = match value {
                serde_json::Value::String(text) => text.clone(),
                serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
                    panic!("nested value under {key}: {line}")
                }
                other => other.to_string(),
            };
            (key.clone(), text)
        })
        .collect()
}

/// `key=value key="quoted \"value\""` pairs.
pub fn parse_logfmt(line: &str) -> Line {
    let mut pairs = Line::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if key.is_empty() {
            return pairs;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some('t') => value.push('\t'),
                        Some('r') => value.push('\r'),
                        Some(other) => value.push(other),
                        None => break,
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        pairs.insert(key, value);
    }
}
