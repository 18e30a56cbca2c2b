//! The TLS files an operator names: the certificate chain and key of `serve
//! --tls-cert/--tls-key` (PEM, the key PKCS#8, PKCS#1 or SEC1), the CA file of
//! `--ca-file`, and the fingerprints of `--tls-pin`/`ARK_TLS_PIN` in each form they
//! are written. Files are written to a temp dir, as the node reads them from disk.
//!
//! Input: the certificate file, `\n\0\n`, the key file, `\n\0\n`, a fingerprint.
//! A fingerprint that reads writes itself in a form that reads back the same; a
//! certificate that loads has the fingerprint of its first certificate.
#![no_main]

use std::path::PathBuf;

use ark_lattice::http::{Fingerprint, PeerTrust, ServerTls};
use libfuzzer_sys::fuzz_target;

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ark-lattice-fuzz-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

thread_local! {
    static DIR: PathBuf = temp_dir();
}

fuzz_target!(|data: &[u8]| {
    let mut pieces = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(3).position(|window| window == b"\n\0\n") {
        pieces.push(&rest[..at]);
        rest = &rest[at + 3..];
    }
    pieces.push(rest);
    let mut parts = pieces.into_iter();
    let cert = parts.next().unwrap_or_default();
    let key = parts.next().unwrap_or_default();
    let pin = parts.next().unwrap_or_default();

    if let Ok(text) = std::str::from_utf8(pin) {
        if let Ok(fingerprint) = Fingerprint::parse(text) {
            assert_eq!(
                Fingerprint::parse(&fingerprint.to_string()),
                Ok(fingerprint)
            );
        }
    }
    DIR.with(|dir| {
        let cert_file = dir.join("cert.pem");
        let key_file = dir.join("key.pem");
        std::fs::write(&cert_file, cert).expect("write the certificate file");
        std::fs::write(&key_file, key).expect("write the key file");
        let _ = PeerTrust::CaFile(cert_file.clone()).check_ca_file();
        if let Ok(tls) = ServerTls::load(&cert_file, &key_file) {
            let fingerprint = tls.fingerprint();
            assert_eq!(
                Fingerprint::parse(&fingerprint.to_string()),
                Ok(fingerprint)
            );
        }
    });
});
