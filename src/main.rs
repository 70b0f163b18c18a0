//! The binary: parse flags, start logging, hand over to the library's
//! wiring (`exporter::run`), and turn its outcome into an exit code.

use std::process::ExitCode;
use unassigned_port_exporter::cli::{self, Parsed};
use unassigned_port_exporter::exporter::{self, EXIT_BAD_INPUT};
use unassigned_port_exporter::logging::{self, LogFormat};

fn main() -> ExitCode {
    let flags = match cli::parse(std::env::args_os()) {
        Parsed::Run(flags) => flags,
        Parsed::Print(text) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Parsed::Refuse(line) => {
            eprintln!("{line}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let format = LogFormat::from_name(&flags.log_format).unwrap_or(LogFormat::Logfmt);
    logging::init(flags.log_level, format);
    match exporter::run(&flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("unassigned_port_exporter: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
