//! What each CLI command does. `main` parses flags into a `Config` and calls [`run`].
//!
//! Lattice commands take the service's typed answer, from the store here or from the
//! server that holds the store (its `/api/lattice/*` and `/api/trust/*` routes), and
//! render it, so the user never sees a lock error.

mod export;
mod federation;
mod lattice;
mod remote;
mod trust;
mod verify;

use crate::cli::{Args, Command};
use crate::config::Config;
use crate::error::Error;
use crate::service::{
    Holder, Output, object, open_store, open_waiting, read_input, running_server, string,
    verify_offline, verify_store,
};
use crate::store::{Store, StoreError, WriteSummary};

/// Runs the command given on the command line.
pub fn run(args: Args, config: &Config, out: &mut Output) -> Result<(), Error> {
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
        Command::Verify(args) if !args.skip_page_check => match verify_offline(config) {
            Err(Error::Store(StoreError::Locked { path })) => match running_server(config) {
                Some(server) => remote::forward(config, &server, &command, out),
                None => Err(Error::Store(StoreError::Locked { path })),
            },
            Ok(report) => verify::render(&report, args.json, out),
            Err(error) => Err(error),
        },
        _ => {
            let result = run_store_command(&command, config, out);
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
fn run_store_command(command: &Command, config: &Config, out: &mut Output) -> Result<(), Error> {
    let deadline = std::time::Instant::now() + config.store_wait;
    loop {
        match open_waiting(config, Some(deadline), || open_store(config))? {
            Holder::Opened((mut store, _)) => {
                // This process is the CLI, not the one-threaded server: an import may
                // sign its batches on two threads.
                store.sign_on_two_threads();
                let outcome = run_here(command, &mut store, config, out);
                crate::sync::move_aside_damaged(&mut store);
                return outcome;
            }
            Holder::Server(server) => match remote::forward(config, &server, command, out) {
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

/// Runs a store command on the store this process opened.
fn run_here(
    command: &Command,
    store: &mut Store,
    config: &Config,
    out: &mut Output,
) -> Result<(), Error> {
    match command {
        Command::Trust(trust) => trust::run_here(&trust.command, store, out),
        Command::Import(import) => {
            let mut write = |batch: &[crate::model::Node]| -> Result<WriteSummary, Error> {
                Ok(store.write_nodes(batch, crate::model::unix_millis_now())?)
            };
            crate::service::import_with(
                import,
                config.verbose,
                &read_input,
                out,
                &mut Output::stderr(),
                &mut write,
            )
        }
        Command::Export(args) => export::here(store, args, out),
        Command::Verify(args) => {
            let report = verify_store(store, config, args.skip_page_check)?;
            verify::render(&report, args.json, out)
        }
        _ => lattice::run_here(command, store, config, out),
    }
}
