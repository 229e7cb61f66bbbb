//! A TLS endpoint on 127.0.0.1 with a certificate from a test CA that no system store trusts:
//! enough to show whether a driver verified the certificate (the handshake completes only with
//! that CA, or with verification off).

use std::{
    io::{Read, Write},
    net::TcpListener,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use rustls::{
    ServerConfig, ServerConnection,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

// Test-only material, valid until 2126: a CA no system store holds, and a server certificate
// it signed for 127.0.0.1 and localhost, with that certificate's key.
pub const CA: &str = "-----BEGIN CERTIFICATE-----
MIIBoTCCAUegAwIBAgIUXlFw770PXn0vjxSbDj8ib+aJxRswCgYIKoZIzj0EAwIw
HTEbMBkGA1UEAwwSZGJjb25uIHRscyB0ZXN0IENBMCAXDTI2MTEyNDA1NTk1MloY
DzIxMjYxMDMxMDU1OTUyWjAdMRswGQYDVQQDDBJkYmNvbm4gdGxzIHRlc3QgQ0Ew
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAARwBfN2igUDse4yh4W3wX5jOhvZQRqn
UXXN/TJGyI5hAhuY83GKIXVxsEU8JqzFuYAx0vsq+UBtf/rrRE9c88JHo2MwYTAd
BgNVHQ4EFgQUGekMJY0Q4dksN4xb8s3AkFTtlxcwHwYDVR0jBBgwFoAUGekMJY0Q
4dksN4xb8s3AkFTtlxcwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMCAgQw
CgYIKoZIzj0EAwIDSAAwRQIgc52sbNPSX+EYpz1aR0D9/VO8VUY6CYCyz/VM37hR
024CIQCK9DGSJqrX3pB2AR/oRhj5gn1h51HApx5njiGyldXwIA==
-----END CERTIFICATE-----
";
const SERVER_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIB1jCCAXugAwIBAgIUC9SqXKFbkI2X4PxvWhuA/X2CWbkwCgYIKoZIzj0EAwIw
HTEbMBkGA1UEAwwSZGJjb25uIHRscyB0ZXN0IENBMCAXDTI2MTEyNDA1NTk1MloY
DzIxMjYxMDMxMDU1OTUyWjAhMR8wHQYDVQQDDBZkYmNvbm4gdGxzIHRlc3Qgc2Vy
dmVyMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEFavmZOk3lPI9SQ7FSF07EuH5
5oChvbgGRMWSFgX6IKNaLxR7RaAYBYmADxEgAeDD37K7EIogRP3T2eB1K5BAD6OB
kjCBjzAaBgNVHREEEzARhwR/AAABgglsb2NhbGhvc3QwDAYDVR0TAQH/BAIwADAT
BgNVHSUEDDAKBggrBgEFBQcDATAOBgNVHQ8BAf8EBAMCB4AwHQYDVR0OBBYEFMzD
6Vq2fbkbU3jpumsUeXUbLnoIMB8GA1UdIwQYMBaAFBnpDCWNEOHZLDeMW/LNwJBU
7ZcXMAoGCCqGSM49BAMCA0kAMEYCIQD+Re3XR3eI+g+LXxCWx2rnGw1eIGNAEO4y
EuZauw8auQIhANnYRReOuMkNnQyq4l2C5nAtUsuXA1pIf/o9ROV5LU/y
-----END CERTIFICATE-----
";
const SERVER_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgfSFvn47zERWnM3BM
RspHn5gKmYnOqwrRYj2gOpg+NTyhRANCAAQVq+Zk6TeU8j1JDsVIXTsS4fnmgKG9
uAZExZIWBfogo1ovFHtFoBgFiYAPESAB4MPfsrsQiiBE/dPZ4HUrkEAP
-----END PRIVATE KEY-----
";

/// A TLS endpoint on 127.0.0.1 that speaks no database protocol: it counts the clients that
/// completed the handshake (that is, accepted its certificate), then hangs up on them.
pub struct TlsEndpoint {
    pub port: u16,
    handshakes: Arc<AtomicUsize>,
}

impl TlsEndpoint {
    /// `postgres`: first answer PostgreSQL's SSLRequest with `S`, as its servers do.
    pub fn start(postgres: bool) -> Self {
        Self::start_on("127.0.0.1", postgres)
    }

    /// On address `ip`, with the test CA's certificate for 127.0.0.1 and localhost.
    pub fn start_on(ip: &str, postgres: bool) -> Self {
        Self::start_with(ip, SERVER_CERT, SERVER_KEY, postgres)
    }

    /// On address `ip` with this certificate chain and key (PEM).
    pub fn start_with(ip: &str, cert: &str, key: &str, postgres: bool) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let config = Arc::new(
            ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap(),
        );
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counter = handshakes.clone();
        std::thread::spawn(move || {
            for mut tcp in listener.incoming().flatten() {
                let (config, counter) = (config.clone(), counter.clone());
                std::thread::spawn(move || {
                    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                    // SSLRequest: length 8, then the code 80877103.
                    let mut request = [0u8; 8];
                    if postgres
                        && (tcp.read_exact(&mut request).is_err()
                            || request != [0, 0, 0, 8, 4, 210, 22, 47]
                            || tcp.write_all(b"S").is_err())
                    {
                        return;
                    }
                    let mut tls = ServerConnection::new(config).unwrap();
                    while tls.is_handshaking() {
                        if tls.complete_io(&mut tcp).is_err() {
                            return;
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Self { port, handshakes }
    }

    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

/// A throwaway CA and a server certificate it signed for `ip`, made with openssl at test time
/// (for addresses the committed certificate does not name). Returns (CA, certificate, key) PEM.
pub fn issue_for(ip: &str) -> (String, String, String) {
    let dir = std::env::temp_dir().join(format!("dbconn-tls-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("openssl (Debian package openssl) is needed to issue a test certificate");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &[
                "req", "-x509", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            ][..],
            &ec,
            &[
                "-subj",
                "/CN=dbconn test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req", "-keyout", "server.key", "-out", "server.csr"][..],
            &ec,
            &["-subj", "/CN=dbconn test server"],
        ]
        .concat(),
    );
    let san = format!("subjectAltName=IP:{ip}");
    std::fs::write(
        dir.join("ext.cnf"),
        format!("{san}\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let issued = (read("ca.crt"), read("server.crt"), read("server.key"));
    let _ = std::fs::remove_dir_all(&dir);
    issued
}
