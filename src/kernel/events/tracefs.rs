//! tracefs: where it is, and what a tracepoint's record looks like.
//!
//! A perf tracepoint sample carries the tracepoint's record as raw bytes
//! (`PERF_SAMPLE_RAW`). Their layout is described by the tracepoint's
//! `format` file and changes between kernels (fields were added to
//! `sock:inet_sock_set_state` over time), so offsets are read from there,
//! never hard-coded. The perf event is opened by the tracepoint's numeric
//! `id`, read from the same directory.
//!
//! tracefs lives at `/sys/kernel/tracing` on current kernels and under
//! `/sys/kernel/debug/tracing` on older ones; where neither is mounted and we
//! are allowed to (CAP_SYS_ADMIN), it is mounted at `/sys/kernel/tracing`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where tracefs is looked for, in order.
pub const TRACEFS_CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Finds a mounted tracefs, mounting it at `/sys/kernel/tracing` when none
/// is and the kernel lets us. The error is one line for the log.
pub fn find_or_mount() -> Result<PathBuf, String> {
    if let Some(found) = find_mounted()? {
        return Ok(found);
    }
    let target = Path::new(TRACEFS_CANDIDATES[0]);
    if !target.is_dir() {
        return Err(format!(
            "tracefs is not mounted and {} does not exist (kernel without CONFIG_TRACING?)",
            target.display()
        ));
    }
    rustix::mount::mount("nodev", target, "tracefs", rustix::mount::MountFlags::empty(), "")
        .map_err(|err| {
            format!(
                "tracefs is not mounted and mounting it at {} failed: {err} (needs CAP_SYS_ADMIN, or mount it on the host)",
                target.display()
            )
        })?;
    find_mounted()?.ok_or_else(|| {
        format!(
            "mounted tracefs at {} but it has no events/ directory",
            target.display()
        )
    })
}

/// The first candidate that holds an `events` directory. A tracefs we may
/// not enter (mode 0700, owned by root) is an error, not "absent".
pub fn find_mounted() -> Result<Option<PathBuf>, String> {
    for candidate in TRACEFS_CANDIDATES {
        let events = Path::new(candidate).join("events");
        match std::fs::metadata(&events) {
            Ok(meta) if meta.is_dir() => return Ok(Some(PathBuf::from(candidate))),
            Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(format!(
                    "tracefs at {candidate} is not readable: {err} (run as root, or grant CAP_DAC_READ_SEARCH)"
                ));
            }
            _ => {}
        }
    }
    Ok(None)
}

/// One field of a tracepoint record, as its `format` file describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub offset: usize,
    pub size: usize,
    pub signed: bool,
}

impl Field {
    /// The field's bytes in `record`, or `None` when the record is too short.
    pub fn bytes<'a>(&self, record: &'a [u8]) -> Option<&'a [u8]> {
        record.get(self.offset..self.offset.checked_add(self.size)?)
    }

    /// The field as an unsigned integer in native byte order (1, 2, 4 or 8
    /// bytes), or `None` for other sizes or a short record.
    pub fn unsigned(&self, record: &[u8]) -> Option<u64> {
        let bytes = self.bytes(record)?;
        Some(match bytes.len() {
            1 => u64::from(bytes[0]),
            2 => u64::from(u16::from_ne_bytes(bytes.try_into().ok()?)),
            4 => u64::from(u32::from_ne_bytes(bytes.try_into().ok()?)),
            8 => u64::from_ne_bytes(bytes.try_into().ok()?),
            _ => return None,
        })
    }
}

/// A tracepoint's id and field layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TracepointFormat {
    pub id: u64,
    pub fields: HashMap<String, Field>,
}

impl TracepointFormat {
    /// Reads `events/GROUP/NAME/{id,format}` under `tracefs`.
    pub fn read(tracefs: &Path, group: &str, name: &str) -> Result<TracepointFormat, String> {
        let dir = tracefs.join("events").join(group).join(name);
        let read = |file: &str| {
            std::fs::read_to_string(dir.join(file))
                .map_err(|err| format!("cannot read {}: {err}", dir.join(file).display()))
        };
        let id_text = read("id")?;
        let id = id_text.trim().parse().map_err(|_| {
            format!(
                "{}/id holds {:?}, not a number",
                dir.display(),
                id_text.trim()
            )
        })?;
        let fields = parse_format(&read("format")?);
        Ok(TracepointFormat { id, fields })
    }

    /// A field by name, or a one-line error naming what is missing.
    pub fn field(&self, name: &str) -> Result<Field, String> {
        self.fields
            .get(name)
            .copied()
            .ok_or_else(|| format!("the tracepoint has no field {name:?} on this kernel"))
    }
}

/// Parses the `field:` lines of a tracepoint `format` file:
/// `field:__u16 sport; offset:24; size:2; signed:0;` (tab-separated). The field's name is
/// the last word of its declaration, without any `[N]` array suffix.
/// Lines that do not parse are skipped.
pub fn parse_format(text: &str) -> HashMap<String, Field> {
    let mut fields = HashMap::new();
    for line in text.lines() {
        let mut declaration = None;
        let (mut offset, mut size, mut signed) = (None, None, None);
        for part in line.split(';') {
            let part = part.trim();
            if let Some(rest) = part.strip_prefix("field:") {
                declaration = Some(rest);
            } else if let Some(rest) = part.strip_prefix("offset:") {
                offset = rest.parse().ok();
            } else if let Some(rest) = part.strip_prefix("size:") {
                size = rest.parse().ok();
            } else if let Some(rest) = part.strip_prefix("signed:") {
                signed = rest.parse::<u8>().ok().map(|s| s != 0);
            }
        }
        let (Some(declaration), Some(offset), Some(size)) = (declaration, offset, size) else {
            continue;
        };
        let Some(last_word) = declaration.split_whitespace().last() else {
            continue;
        };
        let name = last_word.split('[').next().unwrap_or(last_word);
        fields.insert(
            name.to_string(),
            Field {
                offset,
                size,
                signed: signed.unwrap_or(false),
            },
        );
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "name: inet_sock_set_state\nID: 2287\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\
\n\
\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;\n\
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;\n\
\tfield:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;\n\
\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;\n\
\n\
print fmt: \"family=%s\", REC->family\n";

    #[test]
    fn parses_names_offsets_and_arrays() {
        let fields = parse_format(SAMPLE);
        assert_eq!(fields.len(), 6);
        assert_eq!(
            fields["sport"],
            Field {
                offset: 24,
                size: 2,
                signed: false
            }
        );
        assert_eq!(fields["saddr_v6"].size, 16);
        assert_eq!(fields["skaddr"].offset, 8);
        assert!(fields["oldstate"].signed);
    }

    #[test]
    fn reads_integers_and_refuses_short_records() {
        let field = Field {
            offset: 2,
            size: 2,
            signed: false,
        };
        let record = [0u8, 0, 0x34, 0x12];
        assert_eq!(
            field.unsigned(&record),
            Some(u64::from(u16::from_ne_bytes([0x34, 0x12])))
        );
        assert_eq!(field.unsigned(&record[..3]), None);
        let odd = Field {
            offset: 0,
            size: 3,
            signed: false,
        };
        assert_eq!(odd.unsigned(&record), None);
    }
}
