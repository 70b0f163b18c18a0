//! The binary: parse flags, start logging, hand over to the library's
//! wiring (`exporter::run`), and turn its outcome into an exit code.

use std::process::ExitCode;
use unassigned_port_exporter::cli::{self, Flags, Parsed};
use unassigned_port_exporter::exporter::{self, EXIT_BAD_INPUT};

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
    init_logging(&flags);
    match exporter::run(&flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("unassigned_port_exporter: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

fn init_logging(flags: &Flags) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(flags.log_level);
    if flags.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
