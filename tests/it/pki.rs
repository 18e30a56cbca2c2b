//! A throwaway certificate authority for the HTTPS tests and the HTTPS bench: a CA and
//! server certificates it signs (for chosen names and dates), written as PEM files.
//! Shared by `tests/it`, `tests/http_layer.rs`, `tests/packaging` and `benches/` through
//! `#[path]`; nothing here touches the machine's own trust store.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    date_time_ymd,
};
use sha2::{Digest, Sha256};

/// A CA whose certificate is written to `<dir>/<name>-ca.pem`.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
    pub file: PathBuf,
}

/// A server certificate and its key, as PEM files.
pub struct ServerCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// `sha256:<hex>` of the certificate's DER bytes, as `--tls-pin` takes it.
    pub fingerprint: String,
}

/// Validity of a server certificate.
#[derive(Clone, Copy)]
pub enum Validity {
    /// 2020 to 2099.
    Current,
    /// 2020 to 2021.
    Expired,
}

impl TestCa {
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, format!("ark-lattice test CA {name}"));
        params.distinguished_name = subject;
        let key = KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        let pem = certificate.pem();
        let file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&file, &pem).unwrap();
        TestCa {
            issuer: Issuer::new(params, key),
            pem,
            file,
        }
    }

    /// A certificate for `names` (host names or IP addresses), written to
    /// `<dir>/<file_stem>.pem` and `<dir>/<file_stem>.key`.
    pub fn issue(
        &self,
        dir: &Path,
        file_stem: &str,
        names: &[&str],
        validity: Validity,
    ) -> ServerCert {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = match validity {
            Validity::Current => date_time_ymd(2099, 1, 1),
            Validity::Expired => date_time_ymd(2021, 1, 1),
        };
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        let cert_file = dir.join(format!("{file_stem}.pem"));
        let key_file = dir.join(format!("{file_stem}.key"));
        std::fs::write(&cert_file, certificate.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        let digest = Sha256::digest(certificate.der());
        let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        ServerCert {
            cert_file,
            key_file,
            fingerprint: format!("sha256:{hex}"),
        }
    }
}

impl ServerCert {
    /// The `serve` flags that serve HTTPS with this certificate.
    pub fn serve_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".to_owned(),
            self.cert_file.display().to_string(),
            "--tls-key".to_owned(),
            self.key_file.display().to_string(),
        ]
    }
}
