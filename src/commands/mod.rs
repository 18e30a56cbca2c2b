//! What each CLI command does. `main` parses flags into a `Config` and calls [`run`].

mod lattice;
mod output;

use crate::cli::{Args, Command};
use crate::config::Config;
use crate::error::Error;
use crate::model::InstanceId;
use crate::store::{Store, StoreOptions};
use crate::trust::KeyPair;

pub use output::Output;

/// The instance key file inside the state dir.
pub const KEY_FILE: &str = "identity.key";

/// Runs the command given on the command line.
pub fn run(args: Args, config: &Config, out: &mut Output) -> Result<(), Error> {
    let Some(command) = args.command else {
        return Err(Error::Usage(
            "no command given; run `ark-lattice --help` for the list".into(),
        ));
    };
    match command {
        Command::Import(import) => lattice::import(config, &import, out),
        Command::Export(export) => lattice::export(config, &export, out),
        Command::Add(add) => lattice::add(config, &add, out),
        Command::Get(get) => lattice::get(config, &get, out),
        Command::Delete(delete) => lattice::delete(config, &delete, out),
        Command::List(list) => lattice::list(config, &list, out),
        Command::Query(query) => lattice::query(config, &query, out),
        Command::Stats(stats) => lattice::stats(config, &stats, out),
        Command::Conflicts(conflicts) => lattice::conflicts(config, &conflicts, out),
    }
}

/// The instance's identity: its key pair, made on first use in the state dir.
pub fn identity(config: &Config) -> Result<KeyPair, Error> {
    let path = config.data_dir.join(KEY_FILE);
    KeyPair::load_or_create(&path).map_err(|error| Error::Other(error.to_string()))
}

/// Opens the store in the state dir as this instance.
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
    store.set_signer(Box::new(move |canonical, version| {
        *crate::trust::sign_record(&key, canonical, version)
            .expect("the store signs only as its own instance")
            .as_bytes()
    }));
    Ok((store, instance_id))
}
