//! Reads IANA's `service-names-port-numbers.csv` into a [`Registry`].
//!
//! The quirks this handles (see shared/iana/README.md): a port column that is
//! a single port, an inclusive range or empty; an empty transport meaning
//! every transport; RFC 4180 quoting with embedded newlines (left to the
//! `csv` crate); "Unassigned ..." and "Reserved" descriptions.

use super::{Registry, Run, Status, Transport};
use std::borrow::Cow;
use std::fmt;
use std::path::Path;

/// Why a CSV was refused, with enough to find the offending row.
#[derive(Debug)]
pub struct LoadError {
    pub source: String,
    /// Line of the file where the bad record starts (1-based), if known.
    pub line: Option<u64>,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}: line {}: {}", self.source, line, self.message),
            None => write!(f, "{}: {}", self.source, self.message),
        }
    }
}

impl std::error::Error for LoadError {}

const PORT_COLUMN: &str = "Port Number";
const TRANSPORT_COLUMN: &str = "Transport Protocol";
const DESCRIPTION_COLUMN: &str = "Description";
const SERVICE_COLUMN: &str = "Service Name";
const DATE_COLUMNS: [&str; 2] = ["Registration Date", "Modification Date"];

/// Loads a registry CSV from disk.
pub fn load_file(path: &Path) -> Result<Registry, LoadError> {
    let source = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|err| LoadError {
        source: source.clone(),
        line: None,
        message: format!("cannot read the IANA registry file: {err}"),
    })?;
    parse(&bytes, source)
}

/// Best claim seen so far for one port: status and service name.
type Claim = Option<(Status, String)>;

/// Parses the CSV text. `source` names it in errors and in the registry info.
pub fn parse(bytes: &[u8], source: String) -> Result<Registry, LoadError> {
    let fail = |line: Option<u64>, message: String| LoadError {
        source: source.clone(),
        line,
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|err| fail(Some(1), format!("unreadable header: {err}")))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|header| header.trim() == name)
            .ok_or_else(|| {
                fail(
                    Some(1),
                    format!(
                        "missing column {name:?}: is this IANA's service-names-port-numbers.csv?"
                    ),
                )
            })
    };
    let port_col = column(PORT_COLUMN)?;
    let transport_col = column(TRANSPORT_COLUMN)?;
    let description_col = column(DESCRIPTION_COLUMN)?;
    let service_col = column(SERVICE_COLUMN)?;
    let date_cols = [column(DATE_COLUMNS[0])?, column(DATE_COLUMNS[1])?];

    // One slot per port per transport while reading; compressed to runs after.
    let mut claims: Vec<Vec<Claim>> = Transport::ALL.iter().map(|_| vec![None; 65536]).collect();
    let mut updated = String::new();
    let mut record = csv::StringRecord::new();
    let mut rows = 0usize;
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(err) => return Err(fail(Some(line), format!("malformed CSV: {err}"))),
        }
        rows += 1;
        let line = record.position().map_or(line, |pos| pos.line());
        for &col in &date_cols {
            let date = record[col].trim();
            // Dates only feed the registry info label: odd ones are skipped,
            // not fatal (the snapshot mixes YYYY-MM-DD and YYYY-MM).
            if is_iso_date(date) && date > updated.as_str() {
                updated = date.to_string();
            }
        }
        let ports = record[port_col].trim();
        if ports.is_empty() {
            continue; // a service name registered without a port
        }
        let (first, last) = parse_port_range(ports).map_err(|message| fail(Some(line), message))?;
        let transports: Vec<Transport> =
            match record[transport_col].trim() {
                "" => Transport::ALL.to_vec(),
                name => vec![Transport::parse(name).ok_or_else(|| {
                    fail(Some(line), format!("unknown transport protocol {name:?}"))
                })?],
            };
        let description = record[description_col].trim();
        let status = classify(description);
        let service = match status {
            Status::Assigned => record[service_col].trim(),
            _ => "",
        };
        for transport in transports {
            let slots = &mut claims[transport as usize];
            for port in first..=last {
                let slot = &mut slots[port as usize];
                let stronger = match slot {
                    None => true,
                    Some((held, held_service)) => {
                        status.precedence() > held.precedence()
                            || (status == *held && held_service.is_empty() && !service.is_empty())
                    }
                };
                if stronger {
                    *slot = Some((status, service.to_string()));
                }
            }
        }
    }
    if rows == 0 {
        return Err(fail(None, "no rows: the file is empty".to_string()));
    }
    let runs = claims
        .iter()
        .map(|slots| compress(slots))
        .collect::<Vec<_>>()
        .try_into()
        .expect("one run list per transport");
    Ok(Registry::from_runs(runs, source, updated))
}

/// "Unassigned" (also "Unassigned [was netstat]") and "Reserved" open the
/// description; anything else is an assignment.
fn classify(description: &str) -> Status {
    if description.starts_with("Unassigned") {
        Status::Unassigned
    } else if description.starts_with("Reserved") {
        Status::Reserved
    } else {
        Status::Assigned
    }
}

fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let parse_one = |part: &str| {
        part.trim()
            .parse::<u16>()
            .map_err(|_| format!("bad port number {text:?}"))
    };
    match text.split_once('-') {
        None => parse_one(text).map(|port| (port, port)),
        Some((first, last)) => {
            let (first, last) = (parse_one(first)?, parse_one(last)?);
            if first > last {
                return Err(format!("port range {text:?} runs backwards"));
            }
            Ok((first, last))
        }
    }
}

fn is_iso_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit())
}

fn compress(slots: &[Claim]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for (port, slot) in slots.iter().enumerate() {
        let Some((status, service)) = slot else {
            continue;
        };
        let port = port as u16;
        if let Some(run) = runs.last_mut()
            && run.last.checked_add(1) == Some(port)
            && run.status == *status
            && run.service == service.as_str()
        {
            run.last = port;
            continue;
        }
        runs.push(Run {
            first: port,
            last: port,
            status: *status,
            service: Cow::Owned(service.clone()),
        });
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(text: &str) -> Result<Registry, LoadError> {
        parse(text.as_bytes(), "test.csv".to_string())
    }

    const HEADER: &str = "Service Name,Port Number,Transport Protocol,Description,Assignee,Contact,Registration Date,Modification Date,Reference,Service Code,Unauthorized Use Reported,Assignment Notes\n";

    #[test]
    fn empty_transport_applies_to_every_transport() {
        let reg = registry(&format!("{HEADER},272-279,,Unassigned,,,,,,,,\n")).unwrap();
        for transport in Transport::ALL {
            assert_eq!(reg.status(transport, 276), Status::Unassigned);
        }
        assert_eq!(reg.status(Transport::Tcp, 280), Status::Unregistered);
    }

    #[test]
    fn quoted_multiline_fields_parse() {
        let text = format!(
            "{HEADER}http,80,tcp,\"World Wide Web HTTP\nsecond line, with \"\"quotes\"\"\",,,,2024-01-02,,,,\n"
        );
        let reg = registry(&text).unwrap();
        assert_eq!(reg.service(Transport::Tcp, 80), Some("http"));
        assert_eq!(reg.updated, "2024-01-02");
    }

    #[test]
    fn errors_name_the_line() {
        let text = format!("{HEADER}a,1,tcp,A,,,,,,,,\nb,70000,tcp,B,,,,,,,,\n");
        let err = registry(&text).unwrap_err().to_string();
        assert_eq!(err, "test.csv: line 3: bad port number \"70000\"");
        let text = format!("{HEADER}a,9-3,tcp,A,,,,,,,,\n");
        assert!(registry(&text).unwrap_err().to_string().contains("line 2"));
        let text = format!("{HEADER}a,9,quic,A,,,,,,,,\n");
        assert!(registry(&text).unwrap_err().to_string().contains("quic"));
        let text = format!("{HEADER}a,9,tcp\n");
        assert!(registry(&text).unwrap_err().to_string().contains("line 2"));
        assert!(
            registry("x,y\n1,2\n")
                .unwrap_err()
                .to_string()
                .contains("missing column")
        );
    }

    #[test]
    fn assignment_outranks_unassigned() {
        let text = format!("{HEADER},7775,tcp,Unassigned,,,,,,,,\nx,7775,tcp,X,,,,,,,,\n");
        assert_eq!(
            registry(&text).unwrap().status(Transport::Tcp, 7775),
            Status::Assigned
        );
    }
}
