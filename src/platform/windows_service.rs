//! Running as a Windows service (Windows only).
//!
//! A plain console program cannot be a Windows service: the Service Control
//! Manager (SCM) waits for the process to connect to it and report "running",
//! and kills it otherwise. [`run_if_service`] makes that connection when the
//! SCM started the process, and does nothing when a console did, so one
//! binary and one command line serve both ways. It is registered under
//! [`SERVICE_NAME`] with `New-Service` or `sc.exe create` (README,
//! "Windows"). Flags come from the service's command line (its binary path),
//! read by the caller as for a console run; start parameters are ignored.
//!
//! The `windows-service` crate does the calls into the SCM; its
//! `define_windows_service!` macro writes the `extern "system"` entry point
//! the SCM calls, which is why that one function is generated, not written.

use std::ffi::OsString;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::{define_windows_service, service_dispatcher};

/// The service name `sc.exe create` registers; the SCM hands it back at start.
pub const SERVICE_NAME: &str = "unassigned_port_exporter";

/// Windows' error when the process was not started by the SCM
/// (ERROR_FAILED_SERVICE_CONTROLLER_CONNECT).
const NOT_STARTED_BY_SCM: i32 = 1063;

/// Resolves when the SCM asks the service to stop (Stop, or system shutdown).
pub type StopRequest = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The exporter itself: serves until the [`StopRequest`] resolves, then
/// returns the process's exit code (0 for a clean stop).
type Serve = Box<dyn FnOnce(StopRequest) -> u8 + Send>;

/// Handed from [`run_if_service`] to the SCM's thread that runs
/// [`service_main`]: the SCM entry point takes no context of ours.
static SERVE: Mutex<Option<Serve>> = Mutex::new(None);

/// The exit code `serve` returned, for [`run_if_service`] to return.
static EXIT_CODE: AtomicU8 = AtomicU8::new(0);

/// If the SCM started this process, runs `serve` as the service named
/// [`SERVICE_NAME`] and returns its exit code once the service has stopped.
/// Returns `None` when the process was started from a console (or any other
/// way), and also when the SCM refuses the connection (saying so on stderr):
/// the caller then runs `serve`'s work itself, as a console program.
pub fn run_if_service(serve: impl FnOnce(StopRequest) -> u8 + Send + 'static) -> Option<ExitCode> {
    *SERVE.lock().unwrap_or_else(PoisonError::into_inner) = Some(Box::new(serve));
    // Blocks until the service stops, or fails at once outside the SCM.
    let outcome = service_dispatcher::start(SERVICE_NAME, ffi_service_main);
    SERVE.lock().unwrap_or_else(PoisonError::into_inner).take();
    match outcome {
        Ok(()) => Some(ExitCode::from(EXIT_CODE.load(Ordering::SeqCst))),
        Err(windows_service::Error::Winapi(err))
            if err.raw_os_error() == Some(NOT_STARTED_BY_SCM) =>
        {
            None
        }
        // Any other refusal: run as a console program all the same. Were the
        // SCM waiting for us, it gives up on its own; a console run must
        // not fail because of the SCM.
        Err(err) => {
            let reason = match &err {
                windows_service::Error::Winapi(os_error) => os_error.to_string(),
                other => other.to_string(),
            };
            eprintln!("unassigned_port_exporter: not running as a Windows service ({reason})");
            None
        }
    }
}

define_windows_service!(ffi_service_main, service_main);

/// Runs on a thread of the SCM's dispatcher: reports "running", serves until
/// the SCM says stop, reports "stopped" with the exit code.
fn service_main(_start_parameters: Vec<OsString>) {
    let Some(serve) = SERVE.lock().unwrap_or_else(PoisonError::into_inner).take() else {
        return;
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stop = Mutex::new(Some(stop));
    let on_control = move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            if let Some(stop) = stop.lock().unwrap_or_else(PoisonError::into_inner).take() {
                let _ = stop.send(());
            }
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let status = match service_control_handler::register(SERVICE_NAME, on_control) {
        Ok(status) => status,
        Err(err) => {
            eprintln!("unassigned_port_exporter: cannot register with the service manager: {err}");
            EXIT_CODE.store(1, Ordering::SeqCst);
            return;
        }
    };
    let report = |state, accepted, exit_code| {
        let _ = status.set_service_status(ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: accepted,
            exit_code,
            checkpoint: 0,
            wait_hint: Duration::ZERO,
            process_id: None,
        });
    };
    report(
        ServiceState::Running,
        ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
        ServiceExitCode::NO_ERROR,
    );
    // A dropped sender (never sent) also ends the wait: stop then too.
    let code = serve(Box::pin(async move {
        let _ = stopped.await;
    }));
    EXIT_CODE.store(code, Ordering::SeqCst);
    // A failure shows in `sc.exe query` as SERVICE_EXIT_CODE.
    let exit_code = match code {
        0 => ServiceExitCode::NO_ERROR,
        code => ServiceExitCode::ServiceSpecific(u32::from(code)),
    };
    report(
        ServiceState::Stopped,
        ServiceControlAccept::empty(),
        exit_code,
    );
}
