//! `berth-registry`: berth's registry server alone, what `berth registry serve` executes.
//! A process of its own, without the code of berth's other commands, keeps the server's
//! memory small (ARCHITECTURE.md, benches/README.md).

#![forbid(unsafe_code)]

use std::process::ExitCode;

#[path = "../error_line.rs"]
mod error_line;
#[path = "../logging.rs"]
mod logging;
#[path = "../registry_serve.rs"]
mod registry_serve;

use registry_serve::ServerCommandLine;

fn main() -> ExitCode {
    let (log_level, args) = match registry_serve::parse_server_args(std::env::args_os().skip(1)) {
        Ok(ServerCommandLine::Serve { log_level, args }) => (log_level, args),
        Ok(ServerCommandLine::Help) => {
            println!("{}", registry_serve::SERVER_USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("berth-registry: {e}\n{}", registry_serve::SERVER_USAGE);
            return ExitCode::from(125);
        }
    };
    // Logging first, so that a failed re-execution is reported at debug level.
    logging::init(log_level);
    registry_serve::reexec_with_one_malloc_arena();
    match registry_serve::serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {}", error_line::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
