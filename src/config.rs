//! The one place that reads flags and environment variables. Everything is read once
//! into a validated [`Config`]; every default lives here.

use std::fmt;
use std::path::PathBuf;

use crate::cli::Args;
use crate::error::Error;

/// The state dir when neither `--data-dir` nor `LATTICE_PATH` is given.
pub const DEFAULT_DATA_DIR: &str = "ark-lattice-data";
/// The store file inside the state dir.
pub const STORE_FILE: &str = "lattice.redb";
/// redb page cache when neither `--cache-mb` nor `ARK_CACHE_MB` is given.
pub const DEFAULT_CACHE_MB: u64 = 16;
/// Records per import transaction: one fsync per batch, not per record.
pub const IMPORT_BATCH: usize = 2000;

/// ARK's instance types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceType {
    Local,
    Cloud,
    Pi,
}

impl InstanceType {
    pub fn parse(text: &str) -> Result<InstanceType, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "local" => Ok(InstanceType::Local),
            "cloud" => Ok(InstanceType::Cloud),
            "pi" => Ok(InstanceType::Pi),
            other => Err(format!("instance type {other:?} is not local, cloud or pi")),
        }
    }
}

impl fmt::Display for InstanceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InstanceType::Local => "local",
            InstanceType::Cloud => "cloud",
            InstanceType::Pi => "pi",
        })
    }
}

/// Settings every command shares.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub cache_bytes: usize,
    pub instance_type: InstanceType,
    pub verbose: bool,
}

impl Config {
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join(STORE_FILE)
    }

    /// Builds the config from parsed flags and an environment lookup (`std::env::var`
    /// in `main`, a table in tests).
    pub fn from_args(args: &Args, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Error> {
        let data_dir = args
            .data_dir
            .clone()
            .or_else(|| env("LATTICE_PATH").filter(|path| !path.is_empty()))
            .unwrap_or_else(|| DEFAULT_DATA_DIR.to_owned());
        if data_dir.trim().is_empty() {
            return Err(Error::Config("--data-dir is empty".into()));
        }
        let cache_mb = match (args.cache_mb, env("ARK_CACHE_MB")) {
            (Some(flag), _) => flag,
            (None, Some(text)) => text.trim().parse().map_err(|_| {
                Error::Config(format!(
                    "ARK_CACHE_MB={text:?} is not a whole number of MiB"
                ))
            })?,
            (None, None) => DEFAULT_CACHE_MB,
        };
        if !(1..=65_536).contains(&cache_mb) {
            return Err(Error::Config(format!(
                "store cache of {cache_mb} MiB is outside 1..=65536"
            )));
        }
        let instance_type = match env("ARK_INSTANCE_TYPE").filter(|text| !text.is_empty()) {
            Some(text) => InstanceType::parse(&text)
                .map_err(|reason| Error::Config(format!("ARK_INSTANCE_TYPE: {reason}")))?,
            None => InstanceType::Local,
        };
        let debug = env("DEBUG").unwrap_or_default();
        let verbose = args.verbose
            || debug
                .split(',')
                .any(|scope| scope.trim().starts_with("ark:"));
        Ok(Config {
            data_dir: PathBuf::from(data_dir),
            cache_bytes: (cache_mb * 1024 * 1024) as usize,
            instance_type,
            verbose,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argh::FromArgs;

    fn config(argv: &[&str], env: &[(&str, &str)]) -> Result<Config, Error> {
        let args = Args::from_args(&["ark-lattice"], argv).expect("flags parse");
        let lookup = |name: &str| {
            env.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        };
        Config::from_args(&args, &lookup)
    }

    #[test]
    fn flags_win_over_environment_over_defaults() {
        let defaults = config(&[], &[]).unwrap();
        assert_eq!(defaults.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(defaults.cache_bytes, 16 << 20);
        assert_eq!(defaults.instance_type, InstanceType::Local);
        let from_env = config(
            &[],
            &[
                ("LATTICE_PATH", "/srv/ark"),
                ("ARK_CACHE_MB", "4"),
                ("ARK_INSTANCE_TYPE", "pi"),
            ],
        )
        .unwrap();
        assert_eq!(from_env.data_dir, PathBuf::from("/srv/ark"));
        assert_eq!(from_env.cache_bytes, 4 << 20);
        assert_eq!(from_env.instance_type, InstanceType::Pi);
        let from_flags = config(
            &["--data-dir", "here", "--cache-mb", "2"],
            &[("LATTICE_PATH", "/srv/ark"), ("ARK_CACHE_MB", "4")],
        )
        .unwrap();
        assert_eq!(from_flags.data_dir, PathBuf::from("here"));
        assert_eq!(from_flags.cache_bytes, 2 << 20);
    }

    #[test]
    fn invalid_values_name_the_setting() {
        let error = config(&[], &[("ARK_CACHE_MB", "lots")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("ARK_CACHE_MB"), "{error}");
        let error = config(&[], &[("ARK_INSTANCE_TYPE", "mainframe")])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("ARK_INSTANCE_TYPE") && error.contains("mainframe"),
            "{error}"
        );
        let error = config(&["--cache-mb", "0"], &[]).unwrap_err().to_string();
        assert!(error.contains("0 MiB"), "{error}");
    }

    #[test]
    fn debug_scope_turns_on_verbose_logging() {
        assert!(config(&[], &[("DEBUG", "ark:federation")]).unwrap().verbose);
        assert!(!config(&[], &[("DEBUG", "express")]).unwrap().verbose);
    }
}
