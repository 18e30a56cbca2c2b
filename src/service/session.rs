//! A lattice command run on an open store: [`Session`] (the store, the config and
//! where output goes) and [`run_lattice`], which the CLI calls on a store it opened and
//! the server calls for `POST /api/cli` on the store it holds.

use crate::cli::Command;
use crate::config::Config;
use crate::error::Error;
use crate::store::Store;

use super::output::Output;
use super::{lattice, verify};

/// Opens an input file by the name given on the command line: its name for messages
/// and a reader, so an import reads it record by record.
pub(crate) type ReadInput<'a> =
    &'a dyn Fn(&str) -> Result<(String, Box<dyn std::io::Read + Send>), Error>;

/// What a lattice command works with.
pub(crate) struct Session<'a> {
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

/// Runs one store command that prints its own output: `import`, `export` and
/// `verify`. The others return typed answers (`service::views`).
pub(crate) fn run_lattice(command: &Command, session: &mut Session<'_>) -> Result<(), Error> {
    match command {
        Command::Import(import) => lattice::import(session, import),
        Command::Export(export) => lattice::export(session, export),
        Command::Verify(args) => verify::verify(session, args),
        Command::Add(_)
        | Command::Delete(_)
        | Command::List(_)
        | Command::Query(_)
        | Command::Stats(_)
        | Command::Conflicts(_)
        | Command::Gc(_)
        | Command::Get(_)
        | Command::Trust(_) => Err(Error::Usage(
            "add, get, delete, list, query, stats, conflicts, gc and trust have typed routes: PUT and DELETE /api/lattice/nodes/{id}, GET /api/lattice/records/{id}, GET /api/lattice/nodes, GET /api/lattice/stats, GET /api/v2/federation/conflicts, POST /api/lattice/gc, /api/trust/*".into(),
        )),
        Command::Serve(_) | Command::Federation(_) | Command::Keygen(_) => Err(Error::Usage(
            "serve, federation and keygen are not store commands".into(),
        )),
    }
}
