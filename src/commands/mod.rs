//! What each CLI command does. `main` parses flags into a `Config` and calls [`run`].
//!
//! Lattice commands take the service's typed answer, from the store here or from the
//! server that holds the store (its `/api/lattice/*` and `/api/trust/*` routes), and
//! render it, so the user never sees a lock error. `export` and `verify` still run on a
//! [`Session`] and are sent to a server as a command line (`POST /api/cli`).

mod federation;
mod lattice;
mod remote;
mod trust;

use crate::cli::{Args, Command};
use crate::config::Config;
use crate::error::Error;
use crate::service::{
    Holder, Output, Session, object, open_store, open_waiting, read_input, run_lattice,
    running_server, string, verify_offline,
};
use crate::store::StoreError;

/// Runs the command given on the command line. `argv` is the command line without the
/// program name, forwarded as is when a server holds the store.
pub fn run(args: Args, argv: &[String], config: &Config, out: &mut Output) -> Result<(), Error> {
    crate::model::set_clock_offset(config.clock_offset_millis);
    let Some(command) = args.command else {
        return Err(Error::Usage(
            "no command given; run `ark-lattice --help` for the list".into(),
        ));
    };
    match &command {
        Command::Serve(_) => crate::server::serve(config),
        Command::Federation(federation) => federation::run(config, &federation.command, out),
        Command::Keygen(args) => crate::service::keygen(args, out),
        Command::Verify(args) if !args.skip_page_check => match verify_offline(config, args, out) {
            Err(Error::Store(StoreError::Locked { path })) => match running_server(config) {
                Some(server) => remote::forward(config, &server, argv, &command, out),
                None => Err(Error::Store(StoreError::Locked { path })),
            },
            outcome => outcome,
        },
        _ => {
            let result = run_store_command(&command, argv, config, out);
            if let (
                Err(Error::Server {
                    message,
                    may_have_applied,
                }),
                true,
            ) = (&result, remote::wants_json(&command))
            {
                // A script must know whether to check before repeating the call
                // (every store command is safe to repeat, so it may simply repeat it).
                out.json(&object([
                    ("error", string(message.clone())),
                    (
                        "may_have_applied",
                        miniserde::json::Value::Bool(*may_have_applied),
                    ),
                ]))?;
                out.flush()?;
            }
            result
        }
    }
}

/// Runs a store command here, or on the server that holds the store. A server that
/// could not be reached at all (it died after writing `server.json`) is not the end:
/// the store is then free, or a restarted server will hold it, within the same wait.
fn run_store_command(
    command: &Command,
    argv: &[String],
    config: &Config,
    out: &mut Output,
) -> Result<(), Error> {
    let deadline = std::time::Instant::now() + config.store_wait;
    loop {
        match open_waiting(config, Some(deadline), || open_store(config))? {
            Holder::Opened((mut store, _)) => {
                // This process is the CLI, not the one-threaded server: an import may
                // sign its batches on two threads.
                store.sign_on_two_threads();
                if let Command::Trust(trust) = command {
                    let outcome = trust::run_here(&trust.command, &mut store, out);
                    crate::sync::move_aside_damaged(&mut store);
                    return outcome;
                }
                if lattice::is_typed(command) {
                    let outcome = lattice::run_here(command, &mut store, config, out);
                    crate::sync::move_aside_damaged(&mut store);
                    return outcome;
                }
                let mut err = Output::stderr();
                let mut session = Session {
                    store: &mut store,
                    config,
                    out,
                    err: &mut err,
                    read_input: &read_input,
                };
                let outcome = run_lattice(command, &mut session);
                crate::sync::move_aside_damaged(&mut store);
                return outcome;
            }
            Holder::Server(server) => match remote::forward(config, &server, argv, command, out) {
                Err(Error::Server {
                    may_have_applied: false,
                    ..
                }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                result => return result,
            },
        }
    }
}
