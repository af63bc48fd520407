//! Test harness: real loopback peers (a verifying token endpoint, a credential-checking upstream)
//! and the proxy itself, started from a real config file in a temporary folder.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use oauth_egress::clock::Clock;
use oauth_egress::loopback::Sessions;
use oauth_egress::loopback::idp::{IdpOptions, LoopbackIdp};
use oauth_egress::loopback::upstream::LoopbackUpstream;
use oauth_egress::{App, Config};
use rsa::RsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};

pub const CLIENT_ID: &str = oauth_egress::demo::CLIENT_ID;
pub const AUDIENCE: &str = oauth_egress::demo::AUDIENCE;
pub const ALICE: &str = "alice@corp.example.com";
/// The connected app's consumer secret, for introspection.
pub const CLIENT_SECRET: &str = "consumer-secret-for-tests";
/// What the default config maps `ALICE` to.
pub const ALICE_SUB: &str = "alice@corp.example.com.sandbox";

/// One key per test binary: generating RSA keys is the slowest thing a test could do.
pub fn key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("keygen"))
}

pub fn key_pem() -> String {
    key().to_pkcs8_pem(LineEnding::LF).expect("pem").to_string()
}

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the config points its token endpoint and upstreams.
pub struct Peers {
    pub token_url: String,
    pub upstream: String,
}

/// The default test config: the demo's partner SOAP and REST routes, plus an interhome SOAP 1.2
/// route whose requester comes from a header, and a REST route with a fixed upstream.
pub fn default_config(p: &Peers) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
max_body = "1 MiB"

[[providers]]
name = "salesforce"
token_url = "{token_url}"
client_id = "{CLIENT_ID}"
audience = "{AUDIENCE}"
private_key = "test.key"
kid = "test-key-1"
# Short, so that tests of a failing endpoint end quickly; the breaker has its own test.
retry_deadline = "1s"
breaker_failures = 1000

[[routes]]
name = "sf-soap"
path = "/services/Soap/u/58.0"
kind = "soap"
provider = "salesforce"
wsdl = "wsdl/salesforce-partner-v58.wsdl"
upstream = "instance_url"

[[routes]]
name = "sf-rest"
path = "/services/data/"
kind = "rest"
provider = "salesforce"
upstream = "instance_url"

[[routes]]
name = "interhome"
path = "/interhome"
kind = "soap"
provider = "salesforce"
wsdl = "wsdl/interhome.wsdl"
upstream = "{upstream}"
requester = {{ header = "X-Requester" }}
session_element = "Header/ServiceAuthHeader/Password"

[[routes]]
name = "fixed-rest"
path = "/fixed"
kind = "rest"
provider = "salesforce"
upstream = "{upstream}/base"

[subjects]
template = "{{local}}@corp.example.com.sandbox"
map = {{ "ops@corp.example.com" = "integration@corp.example.com" }}
"#,
        token_url = p.token_url,
        upstream = p.upstream,
    )
}

pub struct Harness {
    pub proxy: SocketAddr,
    /// The admin listener, when the config has one.
    pub admin: Option<SocketAddr>,
    /// The config file (write a new one and reload to change it).
    pub config_path: PathBuf,
    pub idp: LoopbackIdp,
    pub upstream: LoopbackUpstream,
    pub sessions: Sessions,
    pub app: Arc<App>,
    pub clock: Clock,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    running: oauth_egress::Running,
}

pub struct Setup {
    pub expires_in: Option<u64>,
    /// Serve the upstream over TLS with a certificate from a test CA.
    pub tls_upstream: bool,
    /// Trust that test CA (`[tls] ca_files`) in the proxy's config.
    pub trust_test_ca: bool,
    /// Configure RFC 7662 introspection at the loopback endpoint (which reports 900 s lifetimes).
    pub introspection: bool,
    /// Configure RFC 7009 revocation at shutdown.
    pub revocation: bool,
    /// Files written next to the config before it is loaded: (name, contents, owner-only).
    pub files: Vec<(&'static str, String, bool)>,
    /// More keys the token endpoint accepts, by kid.
    pub idp_other_keys: Vec<(String, rsa::RsaPublicKey)>,
    /// Which element the upstream reads SOAP sessions from.
    pub upstream_session_element: &'static str,
    pub config: fn(&Peers) -> String,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            expires_in: None,
            tls_upstream: false,
            trust_test_ca: false,
            introspection: false,
            revocation: false,
            files: Vec::new(),
            idp_other_keys: Vec::new(),
            upstream_session_element: "sessionId",
            config: default_config,
        }
    }
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::with(Setup::default()).await
    }

    pub async fn with(setup: Setup) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        write_private(&dir.path().join("test.key"), &key_pem());
        copy_wsdls(dir.path());
        for (name, text, private) in &setup.files {
            if *private {
                write_private(&dir.path().join(name), text);
            } else {
                std::fs::write(dir.path().join(name), text).expect("file");
            }
        }
        let sessions = Sessions::default();
        let tls = setup.tls_upstream.then(|| {
            let pki = test_pki();
            std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).expect("ca");
            oauth_egress::server::tls_acceptor(pki.leaf_pem.as_bytes(), pki.leaf_key_pem.as_bytes()).expect("acceptor")
        });
        let upstream = LoopbackUpstream::start_with(sessions.clone(), setup.upstream_session_element, tls)
            .await
            .expect("upstream");
        let idp = LoopbackIdp::start(
            IdpOptions {
                expires_in: setup.expires_in,
                client_secret: Some(CLIENT_SECRET.into()),
                session_seconds: 900,
                other_keys: setup.idp_other_keys.clone(),
                ..IdpOptions::salesforce(CLIENT_ID, AUDIENCE, key().to_public_key(), upstream.url())
            },
            sessions.clone(),
        )
        .await
        .expect("idp");
        let peers = Peers { token_url: idp.token_url(), upstream: upstream.url() };
        let path = dir.path().join("oauth-egress.toml");
        let mut text = (setup.config)(&peers);
        if setup.introspection {
            write_private(&dir.path().join("client.secret"), &format!("{CLIENT_SECRET}\n"));
            text = text.replacen(
                "kid = \"test-key-1\"\n",
                &format!(
                    "kid = \"test-key-1\"\nintrospection_url = \"{}\"\nclient_secret_file = \"client.secret\"\n",
                    idp.introspection_url()
                ),
                1,
            );
        }
        if setup.revocation {
            text = text.replacen(
                "kid = \"test-key-1\"\n",
                &format!("kid = \"test-key-1\"\nrevocation_url = \"{}\"\n", idp.revocation_url()),
                1,
            );
        }
        if setup.trust_test_ca {
            text.push_str("\n[tls]\nca_files = [\"ca.pem\"]\n");
        }
        std::fs::write(&path, text).expect("config");
        let config = Config::load(&path).unwrap_or_else(|e| panic!("config: {e}"));
        let clock = Clock::default();
        let app = Arc::new(App::with_clock(config, clock.clone()).expect("app").with_source(path.clone()));
        let running = oauth_egress::Running::start(Arc::clone(&app)).await.expect("proxy");
        let (proxy, admin) = (running.addr, running.admin);
        Harness {
            proxy,
            admin,
            config_path: path,
            idp,
            upstream,
            sessions,
            app,
            clock,
            http: reqwest::Client::new(),
            dir,
            running,
        }
    }

    /// Asks the proxy to shut down as SIGTERM would, without waiting.
    pub fn begin_shutdown(&mut self) {
        self.running.begin_stop();
    }

    /// Shuts the proxy down as SIGTERM would, and waits until `run` has returned.
    pub async fn shutdown(&mut self) {
        self.running.stop().await.expect("run");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.proxy, path)
    }

    /// POSTs a SOAP 1.1 envelope to the partner route.
    pub async fn soap11(&self, envelope: &str) -> Answer {
        self.post("/services/Soap/u/58.0", "text/xml; charset=utf-8", envelope, &[]).await
    }

    pub async fn post(&self, path: &str, content_type: &str, body: &str, headers: &[(&str, &str)]) -> Answer {
        let mut req = self.http.post(self.url(path)).header("content-type", content_type).body(body.to_owned());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Answer::from(req.send().await.expect("send")).await
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut req = self.http.get(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Answer::from(req.send().await.expect("send")).await
    }
}

/// Writes a key or secret readable by its owner only, as the proxy requires.
pub fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

pub fn copy_wsdls(to: &Path) {
    std::fs::create_dir_all(to.join("wsdl")).expect("mkdir");
    for name in ["salesforce-partner-v58.wsdl", "interhome.wsdl"] {
        std::fs::copy(manifest_dir().join("wsdl").join(name), to.join("wsdl").join(name)).expect("copy wsdl");
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    async fn from(r: reqwest::Response) -> Answer {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.text().await.expect("body");
        Answer { status, headers, body }
    }

    pub fn content_type(&self) -> &str {
        self.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A partner API `query` with `requester` as the session, as internal apps send it.
pub fn query(requester: &str) -> String {
    oauth_egress::demo::query_envelope(requester, "SELECT Id FROM Account")
}

/// Waits until `cond` holds, checking every few milliseconds; fails after 10 s. For conditions
/// that another task makes true (a background renewal): the wait ends as soon as it holds.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A CA and a server certificate it signed for 127.0.0.1 and localhost.
pub struct TestPki {
    pub ca_pem: String,
    pub leaf_pem: String,
    pub leaf_key_pem: String,
}

pub fn test_pki() -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "oauth-egress test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key")).expect("ca");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("leaf params");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).expect("leaf");
    TestPki { ca_pem: ca.pem(), leaf_pem: leaf.pem(), leaf_key_pem: leaf_key.serialize_pem() }
}

/// Certificates for mutual TLS: a server certificate for 127.0.0.1, a client CA and a client
/// certificate it issued for `billing.corp.example.com`, and one from a CA nobody trusts.
pub struct MtlsPki {
    pub server_ca_pem: String,
    pub server_pem: String,
    pub server_key_pem: String,
    pub client_ca_pem: String,
    pub client_pem: String,
    pub client_key_pem: String,
    pub stranger_pem: String,
    pub stranger_key_pem: String,
}

pub fn mtls_pki() -> MtlsPki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let ca = |cn: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, cn);
        CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca")
    };
    let leaf = |issuer: &CertifiedIssuer<'_, KeyPair>, names: Vec<String>| {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(names).expect("params").signed_by(&key, issuer).expect("leaf");
        (cert.pem(), key.serialize_pem())
    };
    let server_ca = ca("server CA");
    let client_ca = ca("client CA");
    let stranger_ca = ca("stranger CA");
    let (server_pem, server_key_pem) = leaf(&server_ca, vec!["127.0.0.1".into(), "localhost".into()]);
    let (client_pem, client_key_pem) = leaf(&client_ca, vec!["billing.corp.example.com".into()]);
    let (stranger_pem, stranger_key_pem) = leaf(&stranger_ca, vec!["billing.corp.example.com".into()]);
    MtlsPki {
        server_ca_pem: server_ca.pem(),
        server_pem,
        server_key_pem,
        client_ca_pem: client_ca.pem(),
        client_pem,
        client_key_pem,
        stranger_pem,
        stranger_key_pem,
    }
}

/// Log lines written by every crate, for tests that read them. Installs the process-wide
/// subscriber: one test binary may call it once.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub fn install(level: tracing::Level) -> Captured {
        let logs = Captured::default();
        let writer = logs.clone();
        tracing_subscriber::fmt().with_max_level(level).with_writer(move || writer.clone()).with_ansi(false).init();
        logs
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

/// A GET of `/services/data/v58.0/x` for `requester` through the proxy's Unix socket; the status.
pub async fn get_over_unix_socket(path: &Path, requester: &str) -> u16 {
    let stream = tokio::net::UnixStream::connect(path).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    let request = http::Request::get("/services/data/v58.0/x")
        .header("host", "localhost")
        .header("X-Requester", requester)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    sender.send_request(request).await.expect("send").status().as_u16()
}
