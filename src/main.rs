//! The binary: parse flags, start logging, hand over to the library's
//! wiring (`exporter::run_until`), and turn its outcome into an exit code.
//! On Windows the same binary also runs as a service (`windows_service`).

use std::process::ExitCode;
use unassigned_port_exporter::cli::{self, Parsed};
use unassigned_port_exporter::exporter::{self, EXIT_BAD_INPUT};
use unassigned_port_exporter::logging::{self, LogFormat};

fn main() -> ExitCode {
    // Started by the Service Control Manager: serve as a service, until it
    // says stop. Started from a console: returns None at once.
    #[cfg(windows)]
    if let Some(code) =
        unassigned_port_exporter::platform::windows_service::run_if_service(exporter_main)
    {
        return code;
    }
    ExitCode::from(exporter_main(std::future::pending()))
}

/// Flags to exit code: serves until a signal, or until `stop_request`
/// resolves (a Windows service's Stop).
fn exporter_main(stop_request: impl Future<Output = ()> + Send + 'static) -> u8 {
    let flags = match cli::parse(std::env::args_os()) {
        Parsed::Run(flags) => flags,
        Parsed::Print(text) => {
            print!("{text}");
            return 0;
        }
        Parsed::Refuse(line) => {
            eprintln!("{line}");
            return EXIT_BAD_INPUT;
        }
    };
    let format = LogFormat::from_name(&flags.log_format).unwrap_or(LogFormat::Logfmt);
    logging::init(flags.log_level, format);
    match exporter::run_until(&flags, stop_request) {
        Ok(()) => 0,
        Err(failure) => {
            eprintln!("unassigned_port_exporter: {}", failure.message);
            failure.code
        }
    }
}
