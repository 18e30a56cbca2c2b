//! The private key file: created once with owner-only permissions, refused when others
//! could read it. What the key is used for is left to the rest of `trust`.
//!
//! # Format
//!
//! The file holds the base64 seed followed by one newline, exactly what
//! `base64.b64encode(bytes(signing_key)) + b"\n"` writes with PyNaCl, so a key can be
//! moved between ARK's Python tools and this binary. It is created with mode 0600 (a
//! temporary file in the same directory, then linked into place) so it is never visible
//! half-written or with wider permissions. On Unix a key file that group or others may
//! read or write is refused rather than used, as ssh does.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::keys::{KeyError, KeyPair};
use crate::model::hex;

/// The key file could not be read, created or trusted.
#[derive(Debug)]
pub enum KeyFileError {
    Read {
        path: PathBuf,
        source: io::Error,
    },
    Write {
        path: PathBuf,
        source: io::Error,
    },
    Garbled {
        path: PathBuf,
        reason: KeyError,
    },
    /// Group or others may read or write the file; `mode` is its permission bits.
    TooOpen {
        path: PathBuf,
        mode: u32,
    },
    AlreadyExists {
        path: PathBuf,
    },
    /// Owned by another user, who can read or replace it.
    NotOwned {
        path: PathBuf,
        owner: u32,
        user: u32,
    },
    NoRandomness(KeyError),
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyFileError::Read { path, source } => {
                write!(f, "cannot read key file {}: {source}", path.display())
            }
            KeyFileError::Write { path, source } => {
                write!(f, "cannot write key file {}: {source}", path.display())
            }
            KeyFileError::Garbled { path, reason } => write!(
                f,
                "key file {} does not hold a base64 ed25519 seed: {reason}",
                path.display()
            ),
            KeyFileError::TooOpen { path, mode } => write!(
                f,
                "key file {path} is accessible by group or others (mode {mode:04o}); \
                 fix it with `chmod 600 {path}`",
                path = path.display()
            ),
            KeyFileError::NotOwned { path, owner, user } => write!(
                f,
                "key file {path} belongs to user {owner}, not to this user ({user}); its \
                 owner could read or replace it; run as its owner or fix it with \
                 `chown {user} {path}`",
                path = path.display()
            ),
            KeyFileError::AlreadyExists { path } => write!(
                f,
                "key file {} already exists; remove it first to replace the key",
                path.display()
            ),
            KeyFileError::NoRandomness(reason) => reason.fmt(f),
        }
    }
}

impl std::error::Error for KeyFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KeyFileError::Read { source, .. } | KeyFileError::Write { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl KeyPair {
    /// Loads the key at `path`, creating it (mode 0600) when the file does not exist.
    pub(crate) fn load_or_create(path: &Path) -> Result<KeyPair, KeyFileError> {
        match KeyPair::load(path) {
            Err(KeyFileError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                let key_pair = KeyPair::generate().map_err(KeyFileError::NoRandomness)?;
                match key_pair.save(path) {
                    Ok(()) => Ok(key_pair),
                    // Another process created it between our read and our write: use
                    // theirs, so both end up with the same identity.
                    Err(KeyFileError::AlreadyExists { .. }) => KeyPair::load(path),
                    Err(error) => Err(error),
                }
            }
            other => other,
        }
    }

    /// Loads the key at `path`, refusing a file that group or others may access.
    pub fn load(path: &Path) -> Result<KeyPair, KeyFileError> {
        let read_error = |source| KeyFileError::Read {
            path: path.to_owned(),
            source,
        };
        let file = fs::File::open(path).map_err(read_error)?;
        check_private(path, &file)?;
        // A key file holds 44 characters of base64; reading more than a few KiB of a
        // wrong path (a log, an image) would only make a longer error.
        let text = io::read_to_string(io::Read::take(file, 4096)).map_err(read_error)?;
        KeyPair::from_base64_seed(&text).map_err(|reason| KeyFileError::Garbled {
            path: path.to_owned(),
            reason,
        })
    }

    /// Writes the key to a new file at `path` with mode 0600; an existing file is
    /// never overwritten, since that would silently change this instance's identity.
    pub(crate) fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        let write_error = |source| KeyFileError::Write {
            path: path.to_owned(),
            source,
        };
        let directory = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let file_name = path.file_name().ok_or_else(|| {
            write_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "path has no file name",
            ))
        })?;
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix).map_err(|error| {
            KeyFileError::NoRandomness(KeyError::NoRandomness(error.to_string()))
        })?;
        let temporary = directory.join(format!(
            ".{}.{}.tmp",
            file_name.to_string_lossy(),
            hex(&suffix)
        ));

        let result = write_new_private(&temporary, format!("{}\n", self.seed_base64()).as_bytes())
            .and_then(|()| link_no_clobber(&temporary, path));
        // The temporary name is gone after a rename and redundant after a link; removing
        // it also cleans up after a failed write.
        let _ = fs::remove_file(&temporary);
        match result {
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                Err(KeyFileError::AlreadyExists {
                    path: path.to_owned(),
                })
            }
            Err(error) => Err(write_error(error)),
            Ok(()) => {
                sync_directory(directory);
                Ok(())
            }
        }
    }
}

#[cfg(unix)]
fn check_private(path: &Path, file: &fs::File) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = file.metadata().map_err(|source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    // Another user owning the file can read it, or swap in a key of their choosing,
    // whatever its mode says (issue 11).
    let owner = std::os::unix::fs::MetadataExt::uid(&metadata);
    let user = rustix::process::geteuid().as_raw();
    if owner != user {
        return Err(KeyFileError::NotOwned {
            path: path.to_owned(),
            owner,
            user,
        });
    }
    let mode = metadata.permissions().mode() & 0o7777;
    // Execute bits for group/others leak nothing, so only read and write are refused.
    if mode & 0o066 != 0 {
        return Err(KeyFileError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _file: &fs::File) -> Result<(), KeyFileError> {
    Ok(())
}

/// Creates `path` (which must not exist) with owner-only permissions from the start,
/// so there is no moment at which another user could open it.
fn write_new_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Puts the finished temporary file at `path` unless something is already there.
///
/// A hard link fails when the target exists, which a rename would not; filesystems
/// without hard links fall back to check-then-rename, which has a small window in
/// which two processes creating a key at once could both succeed.
fn link_no_clobber(temporary: &Path, path: &Path) -> io::Result<()> {
    match fs::hard_link(temporary, path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Err(error),
        Err(_) => {
            if fs::symlink_metadata(path).is_ok() {
                return Err(io::ErrorKind::AlreadyExists.into());
            }
            fs::rename(temporary, path)
        }
    }
}

/// Makes the new directory entry durable; best effort, as not every platform allows
/// opening a directory.
fn sync_directory(directory: &Path) {
    if let Ok(handle) = fs::File::open(directory) {
        let _ = handle.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temporary_directory(name: &str) -> PathBuf {
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix).unwrap();
        let directory =
            std::env::temp_dir().join(format!("ark-lattice-keys-{name}-{}", hex(&suffix)));
        fs::create_dir_all(&directory).unwrap();
        directory
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_created_private_and_loaded_again() {
        use std::os::unix::fs::PermissionsExt;
        let directory = temporary_directory("create");
        let path = directory.join("instance.key");
        let created = KeyPair::load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", created.seed_base64()));
        let loaded = KeyPair::load_or_create(&path).unwrap();
        assert_eq!(loaded.public_key(), created.public_key());
        // Nothing but the key is left in the directory.
        assert_eq!(fs::read_dir(&directory).unwrap().count(), 1);
        assert!(matches!(
            created.save(&path),
            Err(KeyFileError::AlreadyExists { .. })
        ));
        fs::remove_dir_all(directory).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn key_file_readable_by_others_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let directory = temporary_directory("open");
        let path = directory.join("instance.key");
        KeyPair::generate().unwrap().save(&path).unwrap();
        for mode in [0o644, 0o620, 0o604] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let message = KeyPair::load(&path).unwrap_err().to_string();
            assert_eq!(
                message,
                format!(
                    "key file {path} is accessible by group or others (mode {mode:04o}); \
                     fix it with `chmod 600 {path}`",
                    path = path.display()
                )
            );
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(KeyPair::load(&path).is_ok());
        fs::remove_dir_all(directory).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn key_file_owned_by_another_user_is_refused() {
        let user = rustix::process::geteuid().as_raw();
        let directory = temporary_directory("owner");
        let path = if user == 0 {
            // Root can give a private key file away, as a careless `sudo` setup might.
            let path = directory.join("instance.key");
            KeyPair::generate().unwrap().save(&path).unwrap();
            std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
            path
        } else {
            // Anyone else: a file root owns.
            PathBuf::from("/etc/hostname")
        };
        let owner = std::os::unix::fs::MetadataExt::uid(&fs::metadata(&path).unwrap());
        assert_ne!(owner, user);
        assert_eq!(
            KeyPair::load(&path).unwrap_err().to_string(),
            format!(
                "key file {path} belongs to user {owner}, not to this user ({user}); its owner \
                 could read or replace it; run as its owner or fix it with `chown {user} {path}`",
                path = path.display()
            )
        );
        fs::remove_dir_all(directory).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn garbled_key_file_is_reported() {
        let directory = temporary_directory("garbled");
        let path = directory.join("instance.key");
        write_new_private(&path, b"-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
        let message = KeyPair::load_or_create(&path).unwrap_err().to_string();
        assert_eq!(
            message,
            format!(
                "key file {} does not hold a base64 ed25519 seed: seed is not valid base64",
                path.display()
            )
        );
        let missing_directory = directory.join("no-such-dir").join("instance.key");
        let message = KeyPair::load_or_create(&missing_directory)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(&format!(
                "cannot write key file {}: ",
                missing_directory.display()
            )),
            "{message}"
        );
        fs::remove_dir_all(directory).unwrap();
    }
}
