//! Opening an instance from its state dir: its key, its store (signing local writes as
//! this instance), waiting for a store another process holds, and what a panic inside
//! the storage library does. `commands` and `server` both open instances through here.

use crate::config::{Config, KeySource};
use crate::error::Error;
use crate::model::InstanceId;
use crate::store::{Store, StoreError, StoreOptions};
use crate::trust::KeyPair;

use super::store_wait;

/// The instance key file inside the state dir.
pub const KEY_FILE: &str = "identity.key";

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
pub(crate) fn storage_panics_are_handled_elsewhere() {
    EXIT_ON_STORAGE_PANIC.store(false, std::sync::atomic::Ordering::SeqCst);
}

/// The instance's identity: `--key-file`, else `ARK_FED_PRIVKEY`, else the key file in
/// the state dir, made on first use.
pub fn identity(config: &Config) -> Result<KeyPair, Error> {
    match &config.key_source {
        KeySource::File(path) => Ok(KeyPair::load(path)?),
        KeySource::Seed(seed) => KeyPair::from_base64_seed(seed)
            .map_err(|error| Error::Config(format!("ARK_FED_PRIVKEY: {error}"))),
        KeySource::StateDir => Ok(KeyPair::load_or_create(&config.data_dir.join(KEY_FILE))?),
    }
}

/// Opens the store for `serve`: waits (bounded) while a CLI command holds it, and
/// refuses at once when another server does.
pub(crate) fn open_store_for_server(config: &Config) -> Result<(Store, InstanceId), Error> {
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
pub(crate) fn open_store(config: &Config) -> Result<(Store, InstanceId), Error> {
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
