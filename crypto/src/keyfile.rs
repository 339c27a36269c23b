//! Key files: JSON documents holding one ed25519 secret key.
//!
//! A key file is written with mode 0600 and is never overwritten: writing over
//! an existing file is an error, because a validator that silently gets a new
//! key loses its identity (and an account, its funds). Every load error names
//! the file and says what is wrong with it.

use crate::keys::{Keypair, PublicKey};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// What a key is for. A key file of one kind is refused where another is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// Signs consensus messages.
    Validator,
    /// The libp2p identity of a node.
    Node,
    /// Signs transactions for an account.
    Account,
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyKind::Validator => "validator",
            KeyKind::Node => "node",
            KeyKind::Account => "account",
        })
    }
}

/// Why a key file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file does not exist.
    #[error("key file {0} does not exist (create one with `phalanx keys generate`)")]
    Missing(PathBuf),
    /// Writing would replace an existing key.
    #[error("key file {0} already exists; refusing to overwrite a key (move it away first)")]
    AlreadyExists(PathBuf),
    /// The file is not a well-formed key file (truncated, not JSON, bad hex...).
    #[error("key file {path} is malformed: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file holds a key of another kind.
    #[error("key file {path} holds a {found} key, but a {expected} key is needed here")]
    WrongKind {
        /// The file.
        path: PathBuf,
        /// The kind needed.
        expected: KeyKind,
        /// The kind in the file.
        found: KeyKind,
    },
    /// The stored public key does not belong to the stored secret key.
    #[error("key file {0} is corrupt: its public key does not match its secret key")]
    Mismatch(PathBuf),
    /// Another I/O error.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileJson {
    kind: KeyKind,
    public_key: PublicKey,
    secret_key: String,
}

/// Writes `keypair` to a new file at `path` with mode 0600 (creating parent
/// directories). Fails if the file already exists.
pub fn write_key_file(path: &Path, kind: KeyKind, keypair: &Keypair) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let json = KeyFileJson {
        kind,
        public_key: keypair.public(),
        secret_key: hex::encode(keypair.seed()),
    };
    let mut text = serde_json::to_string_pretty(&json).map_err(|e| KeyFileError::Malformed {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            KeyFileError::AlreadyExists(path.to_owned())
        } else {
            io(e)
        }
    })?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Reads a key file of the `expected` kind.
pub fn read_key_file(path: &Path, expected: KeyKind) -> Result<Keypair, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            KeyFileError::Missing(path.to_owned())
        } else {
            KeyFileError::Io {
                path: path.to_owned(),
                source: e,
            }
        }
    })?;
    let malformed = |reason: String| KeyFileError::Malformed {
        path: path.to_owned(),
        reason,
    };
    if text.trim().is_empty() {
        return Err(malformed("the file is empty".into()));
    }
    let json: KeyFileJson = serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
    if json.kind != expected {
        return Err(KeyFileError::WrongKind {
            path: path.to_owned(),
            expected,
            found: json.kind,
        });
    }
    let seed = crate::parse_hex::<32>(&json.secret_key)
        .map_err(|e| malformed(format!("secret_key: {e}")))?;
    let keypair = Keypair::from_seed(seed);
    if keypair.public() != json.public_key {
        return Err(KeyFileError::Mismatch(path.to_owned()));
    }
    Ok(keypair)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/validator_key.json");
        let kp = Keypair::from_label("v0");
        write_key_file(&path, KeyKind::Validator, &kp).unwrap();
        let back = read_key_file(&path, KeyKind::Validator).unwrap();
        assert_eq!(back.public(), kp.public());
        assert_eq!(back.seed(), kp.seed());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        let first = Keypair::from_label("first");
        write_key_file(&path, KeyKind::Account, &first).unwrap();
        let err =
            write_key_file(&path, KeyKind::Account, &Keypair::from_label("second")).unwrap_err();
        assert!(matches!(err, KeyFileError::AlreadyExists(_)), "{err}");
        assert_eq!(
            read_key_file(&path, KeyKind::Account).unwrap().public(),
            first.public()
        );
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        let missing = read_key_file(&path, KeyKind::Node).unwrap_err();
        assert!(matches!(missing, KeyFileError::Missing(_)));
        assert!(missing.to_string().contains("k.json"));

        write_key_file(&path, KeyKind::Node, &Keypair::from_label("n")).unwrap();
        let full = std::fs::read_to_string(&path).unwrap();

        // Truncated at every length: always a clear error, never a panic or a wrong key.
        for cut in 0..full.len() - 2 {
            std::fs::write(&path, &full[..cut]).unwrap();
            let err = read_key_file(&path, KeyKind::Node).unwrap_err();
            assert!(
                matches!(err, KeyFileError::Malformed { .. }),
                "cut {cut}: {err}"
            );
            assert!(err.to_string().contains("k.json"));
        }

        std::fs::write(&path, &full).unwrap();
        let wrong = read_key_file(&path, KeyKind::Validator).unwrap_err();
        assert!(
            matches!(
                wrong,
                KeyFileError::WrongKind {
                    expected: KeyKind::Validator,
                    found: KeyKind::Node,
                    ..
                }
            ),
            "{wrong}"
        );

        let other = Keypair::from_label("other").public().to_string();
        let pk = Keypair::from_label("n").public().to_string();
        std::fs::write(&path, full.replace(&pk, &other)).unwrap();
        assert!(matches!(
            read_key_file(&path, KeyKind::Node).unwrap_err(),
            KeyFileError::Mismatch(_)
        ));
    }
}
