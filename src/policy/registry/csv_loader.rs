//! Reads IANA's `service-names-port-numbers.csv` into a [`Registry`].
//!
//! The quirks this handles (see data/iana/README.md): a port column that is
//! a single port, an inclusive range or empty; an empty transport meaning
//! every transport; RFC 4180 quoting with embedded newlines (left to the
//! `csv` crate); descriptions that say "unassigned" or "reserved" in several
//! spellings (below); `dccp` rows, a transport the exporter never watches,
//! read and skipped.
//!
//! # What a row's description means
//!
//! IANA has no status column: a row's status is written, by hand and over
//! decades, into its Description. `classify` reads the description's first
//! word, case-insensitively and past an opening parenthesis, and only on rows
//! that name no service. Every variant in the 2026-02-25 snapshot (each has a
//! unit test below):
//!
//! | description (Service Name empty unless given) | ports | status |
//! |---|---|---|
//! | `Unassigned` | 880 rows, 272-279 among them | unassigned |
//! | `Unassigned [was netstat]` | 15/tcp | unassigned: a former use, now free |
//! | `unassigned`, note "Deprecated June 2004" | 114 | unassigned: lower case, still IANA's word |
//! | `unassigned`, note "Microsoft (unoffically) using 1895" | 1895/tcp, 1895/udp | unassigned: unofficial use is exactly what the exporter exists to report |
//! | `Unassigned (FRP-Released 12/7/00)` | 2925 | unassigned: released back to IANA |
//! | `(unassigned) Possibly assigned` | 2825 | unassigned: no service, no assignee; "possibly" is no registration, and a real row for the port would outrank this one |
//! | `Reserved` | 807 rows: 0, 1023, 1024, 49151 among them | reserved |
//! | `Reserved - IANA` | 1109 | reserved |
//! | `Reserved for a future enhancement of STUN-BEHAVIOR`, service `stun-behaviors` | 5349/udp | assigned: a named service holds the port for itself (and `stuns`/`turns` hold 5349/udp anyway) |
//! | `RemoteWare Unassigned`, service `remoteware-un` | 2999 | assigned: a service whose name contains the word |
//! | `De-registered`, `Removed`, `Deprecated`, `Decomissioned Port ...`, `De-Commissioned Port` | 585, 659, 1028, 1783, 2682, 2905/udp, 3403, 3404, 7626/udp, 9006, 26264 | assigned: once given out and never put back in the unassigned pool, so its former users may still listen there (585 was IMAP over TLS); the exporter watches ports IANA never gave out |
//! | anything else (`any private mail system`, `Possibly used by Sun Solaris????`, a service's name) | | assigned |
//!
//! When rows disagree about a pair, the strongest claim wins
//! ([`Status`]'s precedence: assigned, reserved, unassigned).
//!
//! [`parse`] runs in steps: find the columns in the header
//! (`Columns::locate`), read each row (`PortRow::read`), let it claim its
//! ports (`Claims::claim`), then compress the claims into runs
//! (`Claims::into_runs`).

use super::{Registry, Run, Status, Transport};
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

const SERVICE_COLUMN: &str = "Service Name";
const PORT_COLUMN: &str = "Port Number";
const TRANSPORT_COLUMN: &str = "Transport Protocol";
const DESCRIPTION_COLUMN: &str = "Description";
const DATE_COLUMNS: [&str; 2] = ["Registration Date", "Modification Date"];

/// IANA registers ports for this transport too; the exporter never watches it.
const UNWATCHED_TRANSPORT: &str = "dccp";

/// [`Transport::ALL`] in a static, so one-transport slices of it are `'static`.
static TRANSPORTS: [Transport; 3] = Transport::ALL;

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

/// Parses the CSV text. `source` names it in errors and in the registry info.
pub fn parse(bytes: &[u8], source: String) -> Result<Registry, LoadError> {
    match read_claims(bytes) {
        Ok((claims, updated)) => Ok(Registry::from_runs(claims.into_runs(), source, updated)),
        Err(refusal) => Err(LoadError {
            source,
            line: refusal.line,
            message: refusal.message,
        }),
    }
}

/// A refusal not yet tied to the file's name; [`parse`] adds it.
struct Refusal {
    line: Option<u64>,
    message: String,
}

impl Refusal {
    fn at(line: u64, message: String) -> Refusal {
        Refusal {
            line: Some(line),
            message,
        }
    }
}

/// Reads the header and every row: the ports claimed and the newest date.
fn read_claims(bytes: &[u8]) -> Result<(Claims, String), Refusal> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|err| Refusal::at(1, format!("unreadable header: {err}")))?;
    let columns = Columns::locate(headers)?;
    let mut claims = Claims::new();
    let mut updated = String::new();
    let mut record = csv::StringRecord::new();
    let mut rows = 0usize;
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(true) => rows += 1,
            Ok(false) => break,
            Err(err) => return Err(Refusal::at(line, format!("malformed CSV: {err}"))),
        }
        let line = record.position().map_or(line, |pos| pos.line());
        keep_newest_date(&record, &columns, &mut updated);
        if let Some(row) = PortRow::read(&record, &columns, line)? {
            claims.claim(&row);
        }
    }
    if rows == 0 {
        return Err(Refusal {
            line: None,
            message: "no rows: the file is empty".to_string(),
        });
    }
    Ok((claims, updated))
}

/// Where the columns this reads sit in the header.
struct Columns {
    service: usize,
    port: usize,
    transport: usize,
    description: usize,
    dates: [usize; 2],
}

impl Columns {
    fn locate(headers: &csv::StringRecord) -> Result<Columns, Refusal> {
        let column = |name: &str| {
            headers
                .iter()
                .position(|header| header.trim() == name)
                .ok_or_else(|| {
                    Refusal::at(
                        1,
                        format!(
                            "missing column {name:?}: is this IANA's service-names-port-numbers.csv?"
                        ),
                    )
                })
        };
        Ok(Columns {
            service: column(SERVICE_COLUMN)?,
            port: column(PORT_COLUMN)?,
            transport: column(TRANSPORT_COLUMN)?,
            description: column(DESCRIPTION_COLUMN)?,
            dates: [column(DATE_COLUMNS[0])?, column(DATE_COLUMNS[1])?],
        })
    }
}

/// Dates only feed the registry info label: odd ones are skipped, not fatal
/// (the snapshot mixes YYYY-MM-DD and YYYY-MM).
fn keep_newest_date(record: &csv::StringRecord, columns: &Columns, updated: &mut String) {
    for &col in &columns.dates {
        let date = record[col].trim();
        if is_iso_date(date) && date > updated.as_str() {
            *updated = date.to_string();
        }
    }
}

/// What one row says about a range of ports.
struct PortRow {
    first: u16,
    last: u16,
    /// Empty for a row about a transport the exporter does not watch.
    transports: &'static [Transport],
    status: Status,
}

impl PortRow {
    /// `None` for a row without a port (a service name registered alone).
    fn read(
        record: &csv::StringRecord,
        columns: &Columns,
        line: u64,
    ) -> Result<Option<PortRow>, Refusal> {
        let ports = record[columns.port].trim();
        if ports.is_empty() {
            return Ok(None);
        }
        let (first, last) =
            parse_port_range(ports).map_err(|message| Refusal::at(line, message))?;
        let transports = row_transports(record[columns.transport].trim())
            .map_err(|message| Refusal::at(line, message))?;
        Ok(Some(PortRow {
            first,
            last,
            transports,
            status: classify(
                record[columns.service].trim(),
                record[columns.description].trim(),
            ),
        }))
    }
}

/// An empty transport column means every transport.
fn row_transports(name: &str) -> Result<&'static [Transport], String> {
    if name.is_empty() {
        return Ok(&TRANSPORTS);
    }
    if name.eq_ignore_ascii_case(UNWATCHED_TRANSPORT) {
        return Ok(&[]);
    }
    match TRANSPORTS
        .iter()
        .position(|t| t.as_str().eq_ignore_ascii_case(name))
    {
        Some(index) => Ok(&TRANSPORTS[index..=index]),
        None => Err(format!("unknown transport protocol {name:?}")),
    }
}

/// A row's status from its service name and description (the module doc
/// lists every variant). A named service holds its port whatever the
/// description says; otherwise the description's first word decides, in any
/// case ("unassigned" on 114), so "RemoteWare Unassigned" stays assigned.
fn classify(service: &str, description: &str) -> Status {
    if !service.is_empty() {
        return Status::Assigned;
    }
    let word = first_word(description);
    if word.eq_ignore_ascii_case("unassigned") {
        Status::Unassigned
    } else if word.eq_ignore_ascii_case("reserved") {
        Status::Reserved
    } else {
        Status::Assigned
    }
}

/// The leading letters of `text`, past opening parentheses: `unassigned` in
/// "(unassigned) Possibly assigned", `Reserved` in "Reserved - IANA".
fn first_word(text: &str) -> &str {
    let text = text.trim_start_matches('(');
    let end = text
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    &text[..end]
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

/// The strongest status claimed so far for every port of every transport:
/// one slot per port while reading, compressed to runs after.
struct Claims {
    slots: [Vec<Option<Status>>; 3],
}

impl Claims {
    fn new() -> Claims {
        Claims {
            slots: Transport::ALL.map(|_| vec![None; 65536]),
        }
    }

    fn claim(&mut self, row: &PortRow) {
        for &transport in row.transports {
            let slots = &mut self.slots[transport.index()];
            for slot in &mut slots[usize::from(row.first)..=usize::from(row.last)] {
                if slot.is_none_or(|held| row.status.precedence() > held.precedence()) {
                    *slot = Some(row.status);
                }
            }
        }
    }

    fn into_runs(self) -> [Vec<Run>; 3] {
        self.slots.map(|slots| compress(&slots))
    }
}

/// Merges consecutive claimed ports with one status into a run.
fn compress(slots: &[Option<Status>]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for (port, slot) in slots.iter().enumerate() {
        let Some(status) = *slot else {
            continue;
        };
        let port = port as u16;
        if let Some(run) = runs.last_mut()
            && run.last.checked_add(1) == Some(port)
            && run.status == status
        {
            run.last = port;
            continue;
        }
        runs.push(Run {
            first: port,
            last: port,
            status,
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

    /// The status one row gives `port` on every transport it names: each
    /// description variant of the module doc, read alone so no other row's
    /// precedence can mask it. Rows are the snapshot's own text.
    fn status_of(row: &str, port: u16) -> [Status; 3] {
        let reg = registry(&format!("{HEADER}{row}\n")).unwrap();
        Transport::ALL.map(|transport| reg.status(transport, port))
    }

    const EVERY: [Status; 3] = [Status::Unassigned; 3];

    #[test]
    fn plain_unassigned_and_reserved() {
        assert_eq!(status_of(",272-279,,Unassigned,,,,,,,,", 276), EVERY);
        assert_eq!(
            status_of(",0,tcp,Reserved,,,,2024-12-20,[RFC6335],,,", 0)[0],
            Status::Reserved
        );
    }

    #[test]
    fn unassigned_was_netstat_is_unassigned() {
        let tcp = status_of(",15,tcp,Unassigned [was netstat],,,,,,,,", 15);
        assert_eq!(tcp[0], Status::Unassigned);
    }

    #[test]
    fn lower_case_unassigned_is_unassigned() {
        // 114, deprecated in 2004: IANA wrote it in lower case.
        let row = ",114,,unassigned,,,,,,,,Deprecated June 2004";
        assert_eq!(status_of(row, 114), EVERY);
    }

    #[test]
    fn unassigned_with_an_unofficial_user_is_unassigned() {
        let row = ",1895,tcp,unassigned,,,,,,,,Microsoft (unoffically) using 1895";
        assert_eq!(status_of(row, 1895)[0], Status::Unassigned);
    }

    #[test]
    fn released_port_is_unassigned() {
        let row = ",2925,,Unassigned (FRP-Released 12/7/00),,,,,,,,";
        assert_eq!(status_of(row, 2925), EVERY);
    }

    #[test]
    fn parenthesised_possibly_assigned_is_unassigned() {
        let row = ",2825,,(unassigned) Possibly assigned,,,,,,,,";
        assert_eq!(status_of(row, 2825), EVERY);
    }

    #[test]
    fn reserved_iana_is_reserved() {
        let row = ",1109,,Reserved - IANA,,,,,,,,";
        assert_eq!(status_of(row, 1109), [Status::Reserved; 3]);
    }

    #[test]
    fn a_named_service_holds_its_port_whatever_the_description() {
        let row = "stun-behaviors,5349,udp,Reserved for a future enhancement of STUN-BEHAVIOR,,,,,[RFC5780],,,";
        assert_eq!(status_of(row, 5349)[1], Status::Assigned);
        let row = "remoteware-un,2999,tcp,RemoteWare Unassigned,[Tim_Farley],[Tim_Farley],,,,,,";
        assert_eq!(status_of(row, 2999)[0], Status::Assigned);
    }

    #[test]
    fn withdrawn_assignments_stay_assigned() {
        for (port, description) in [
            (585, "De-registered"),
            (659, "Removed"),
            (1028, "Deprecated"),
            (1783, "Decomissioned Port 04/14/00, ms"),
            (9006, "De-Commissioned Port"),
        ] {
            let row = format!(",{port},,\"{description}\",,,,,,,,");
            assert_eq!(
                status_of(&row, port),
                [Status::Assigned; 3],
                "{description}"
            );
        }
    }

    #[test]
    fn only_the_first_word_counts() {
        assert_eq!(first_word("(unassigned) Possibly assigned"), "unassigned");
        assert_eq!(first_word("Reserved - IANA"), "Reserved");
        assert_eq!(first_word("Unassigned [was netstat]"), "Unassigned");
        assert_eq!(classify("", "Unassignedness"), Status::Assigned);
        assert_eq!(classify("", ""), Status::Assigned);
    }

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
        assert_eq!(reg.status(Transport::Tcp, 80), Status::Assigned);
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

    #[test]
    fn dccp_rows_are_read_and_skipped() {
        let text = format!("{HEADER}discard,9,dccp,Discard,,,,,,,,\n,10,,Unassigned,,,,,,,,\n");
        let reg = registry(&text).unwrap();
        for transport in Transport::ALL {
            assert_eq!(reg.status(transport, 9), Status::Unregistered);
            assert_eq!(reg.status(transport, 10), Status::Unassigned);
        }
    }

    #[test]
    fn runs_merge_across_services_and_split_at_gaps() {
        let text = format!(
            "{HEADER}a,1,tcp,A,,,,,,,,\nb,2,tcp,B,,,,,,,,\n,3,tcp,Unassigned,,,,,,,,\nc,5,tcp,C,,,,,,,,\n"
        );
        let reg = registry(&text).unwrap();
        let run = |first, last, status| Run {
            first,
            last,
            status,
        };
        assert_eq!(
            reg.runs(Transport::Tcp),
            [
                run(1, 2, Status::Assigned),
                run(3, 3, Status::Unassigned),
                run(5, 5, Status::Assigned)
            ]
        );
        assert!(reg.runs(Transport::Udp).is_empty());
    }
}
