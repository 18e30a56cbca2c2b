//! What each CLI command does. `main` parses flags into a `Config` and calls [`run`].
//!
//! Lattice commands run on a [`Session`]: the store plus where output goes. When a
//! server holds the store, the CLI sends the command line to it (`POST /api/cli`) and
//! prints what it answers, so the user never sees a lock error.

mod federation;
mod gc;
mod lattice;
mod output;
mod remote;
mod store_wait;
mod trust;
mod verify;

use crate::cli::{Args, Command};
use crate::config::{Config, KeySource};
use crate::error::Error;
use crate::model::InstanceId;
use crate::store::{Store, StoreError, StoreOptions};
use crate::trust::KeyPair;

pub use lattice::{conflicts_json, stats_json};
pub use output::{Output, node_with_meta};
pub use remote::{ServerInfo, running_server};
pub use verify::check_before_serving;

/// The instance key file inside the state dir.
pub const KEY_FILE: &str = "identity.key";

/// Opens an input file by the name given on the command line: its name for messages
/// and a reader, so an import reads it record by record.
pub type ReadInput<'a> = &'a dyn Fn(&str) -> Result<(String, Box<dyn std::io::Read>), Error>;

/// What a lattice command works with.
pub struct Session<'a> {
    pub store: &'a mut Store,
    pub config: &'a Config,
    pub out: &'a mut Output,
    /// Messages for stderr: reports of invalid records, progress.
    pub err: &'a mut Output,
    /// Reads an input file by the name given on the command line (`-` is stdin).
    pub read_input: ReadInput<'a>,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("store", &self.store)
            .finish()
    }
}

/// Whether a panic inside the storage library ends the process with a clear error (see
/// [`exit_on_storage_panic`]).
static EXIT_ON_STORAGE_PANIC: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Makes a panic inside redb end the process with one line naming the store file and
/// exit code 6, instead of a backtrace and an abort. redb may panic on a page damaged
/// outside it (a plain open trusts the file); a CLI command then has nothing better to
/// do than to say so. `serve` turns this off once its page check passed (see
/// [`storage_panics_are_handled_elsewhere`]), so a later panic is left to the request
/// handling.
pub fn exit_on_storage_panic(config: &Config) {
    use std::sync::atomic::Ordering;
    EXIT_ON_STORAGE_PANIC.store(true, Ordering::SeqCst);
    let store_path = config.store_path();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_storage = info.location().is_some_and(|location| {
            let file = location.file();
            file.contains("/redb-") || file.contains("/redb/")
        });
        if !in_storage || !EXIT_ON_STORAGE_PANIC.load(Ordering::SeqCst) {
            return previous(info);
        }
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        eprintln!(
            "error: store {} is damaged: the storage library stopped on it ({message}); run `ark-lattice verify`, and see README, \"A damaged store\"",
            store_path.display()
        );
        std::process::exit(crate::error::exit::STORE_DAMAGED);
    }));
}

/// See [`exit_on_storage_panic`].
pub fn storage_panics_are_handled_elsewhere() {
    EXIT_ON_STORAGE_PANIC.store(false, std::sync::atomic::Ordering::SeqCst);
}

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
        Command::Keygen(keygen) => trust::keygen(keygen, out),
        Command::Verify(args) if !args.skip_page_check => {
            match verify::verify_offline(config, args, out) {
                Err(Error::Store(StoreError::Locked { path })) => match running_server(config) {
                    Some(server) => remote::forward(config, &server, argv, &command, out),
                    None => Err(Error::Store(StoreError::Locked { path })),
                },
                outcome => outcome,
            }
        }
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
                out.json(&output::object([
                    ("error", output::string(message.clone())),
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
        match store_wait::open_waiting(config, Some(deadline), || open_store(config))? {
            store_wait::Holder::Opened((mut store, _)) => {
                // This process is the CLI, not the one-threaded server: an import may
                // sign its batches on two threads.
                store.sign_on_two_threads();
                let mut err = Output::stderr();
                let mut session = Session {
                    store: &mut store,
                    config,
                    out,
                    err: &mut err,
                    read_input: &lattice::read_input,
                };
                let outcome = run_lattice(command, &mut session);
                crate::sync::move_aside_damaged(&mut store);
                return outcome;
            }
            store_wait::Holder::Server(server) => {
                match remote::forward(config, &server, argv, command, out) {
                    Err(Error::Server {
                        may_have_applied: false,
                        ..
                    }) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    result => return result,
                }
            }
        }
    }
}

/// Runs one store command (everything but `serve`, `federation` and `keygen`).
pub fn run_lattice(command: &Command, session: &mut Session<'_>) -> Result<(), Error> {
    match command {
        Command::Import(import) => lattice::import(session, import),
        Command::Export(export) => lattice::export(session, export),
        Command::Add(add) => lattice::add(session, add),
        Command::Get(get) => lattice::get(session, get),
        Command::Delete(delete) => lattice::delete(session, delete),
        Command::List(list) => lattice::list(session, list),
        Command::Query(query) => lattice::query(session, query),
        Command::Stats(stats) => lattice::stats(session, stats),
        Command::Verify(args) => verify::verify(session, args),
        Command::Conflicts(conflicts) => lattice::conflicts(session, conflicts),
        Command::Gc(args) => gc::gc(session, args),
        Command::Trust(trust) => trust::run(session, &trust.command),
        Command::Serve(_) | Command::Federation(_) | Command::Keygen(_) => Err(Error::Usage(
            "serve, federation and keygen are not store commands".into(),
        )),
    }
}

/// The instance's identity: `--key-file`, else `ARK_FED_PRIVKEY`, else the key file in
/// the state dir, made on first use.
pub fn identity(config: &Config) -> Result<KeyPair, Error> {
    match &config.key_source {
        KeySource::File(path) => {
            KeyPair::load(path).map_err(|error| Error::Other(error.to_string()))
        }
        KeySource::Seed(seed) => KeyPair::from_base64_seed(seed)
            .map_err(|error| Error::Config(format!("ARK_FED_PRIVKEY: {error}"))),
        KeySource::StateDir => KeyPair::load_or_create(&config.data_dir.join(KEY_FILE))
            .map_err(|error| Error::Other(error.to_string())),
    }
}

/// Opens the store for `serve`: waits (bounded) while a CLI command holds it, and
/// refuses at once when another server does.
pub fn open_store_for_server(config: &Config) -> Result<(Store, InstanceId), Error> {
    match store_wait::open_waiting(config, None, || open_store(config))? {
        store_wait::Holder::Opened(opened) => Ok(opened),
        store_wait::Holder::Server(server) => {
            eprintln!(
                "ark-lattice (pid {}) already serves this store on port {}",
                server.pid, server.port
            );
            Err(Error::Store(StoreError::Locked {
                path: config.store_path(),
            }))
        }
    }
}

/// Opens the store in the state dir as this instance, signing local writes.
pub fn open_store(config: &Config) -> Result<(Store, InstanceId), Error> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| Error::File {
        path: config.data_dir.clone(),
        source,
    })?;
    let key = identity(config)?;
    let instance_id = key.public_key().instance_id();
    let options = StoreOptions {
        cache_bytes: config.cache_bytes,
    };
    let mut store = Store::open(&config.store_path(), &options, instance_id)?;
    store.set_signer(Box::new(move |claim| {
        *crate::trust::sign_record(&key, claim)
            .expect("the store signs only as its own instance")
            .as_bytes()
    }))?;
    Ok((store, instance_id))
}
