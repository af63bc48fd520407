//! `oauth-egress demo`: the whole pipeline on loopback with nothing outside this machine.
//!
//! It makes a key, starts the loopback token endpoint and upstream, writes a real config file next
//! to the shipped partner WSDL, loads it the way `run` does, and sends a SOAP call, a REST call
//! and a refused call through the proxy, printing what went in, what the upstream received and
//! what came back. Tokens are shown shortened.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use rsa::RsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};

use crate::loopback::Sessions;
use crate::loopback::idp::{IdpOptions, LoopbackIdp};
use crate::loopback::upstream::LoopbackUpstream;
use crate::secret::Secret;
use crate::{App, Config};

/// The Salesforce partner WSDL, shipped so the demo needs no file beside the binary.
pub const PARTNER_WSDL: &str = include_str!("../wsdl/salesforce-partner-v58.wsdl");

pub const CLIENT_ID: &str = "3MVG9demo.consumer.key";
pub const AUDIENCE: &str = "https://login.salesforce.com";

/// A SOAP 1.1 partner API `query`, as an internal app sends it: its user's email as the session.
pub fn query_envelope(requester: &str, soql: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com">
  <soapenv:Header>
    <urn:SessionHeader><urn:sessionId>{}</urn:sessionId></urn:SessionHeader>
  </soapenv:Header>
  <soapenv:Body>
    <urn:query><urn:queryString>{}</urn:queryString></urn:query>
  </soapenv:Body>
</soapenv:Envelope>"#,
        crate::soap::escape_xml(requester),
        crate::soap::escape_xml(soql)
    )
}

/// The config the demo writes: a real file, loaded as `run` loads one.
pub fn config_text(token_url: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"

[[providers]]
name = "salesforce"
token_url = "{token_url}"
client_id = "{CLIENT_ID}"
audience = "{AUDIENCE}"
private_key = "demo.key"
assertion_lifetime = "3m"
session_lifetime = "2h"
renew_before = "5m"

[[routes]]
name = "sf-soap"
path = "/services/Soap/u/58.0"
kind = "soap"
provider = "salesforce"
wsdl = "salesforce-partner-v58.wsdl"
upstream = "instance_url"
requester = {{ element = "Header/SessionHeader/sessionId" }}

[[routes]]
name = "sf-rest"
path = "/services/data/"
kind = "rest"
provider = "salesforce"
upstream = "instance_url"
requester = {{ header = "X-Requester" }}

[subjects]
unmapped = "reject"
template = "{{local}}@corp.example.com.sandbox"
map = {{ "ops@corp.example.com" = "integration@corp.example.com" }}
"#
    )
}

/// Writes a new 2048-bit RSA key as PKCS#8 PEM, readable by its owner only.
pub fn write_key(path: &Path) -> Result<RsaPrivateKey, String> {
    let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).map_err(|e| format!("key generation: {e}"))?;
    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| format!("key encoding: {e}"))?;
    write_private(path, pem.as_bytes())?;
    Ok(key)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs the demo and returns what it has to say.
pub async fn run() -> Result<String, String> {
    let mut out = String::new();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let key = write_key(&dir.path().join("demo.key"))?;
    std::fs::write(dir.path().join("salesforce-partner-v58.wsdl"), PARTNER_WSDL).map_err(|e| e.to_string())?;

    let sessions = Sessions::default();
    let upstream = LoopbackUpstream::start(sessions.clone()).await.map_err(|e| e.to_string())?;
    let idp = LoopbackIdp::start(
        IdpOptions::salesforce(CLIENT_ID, AUDIENCE, key.to_public_key(), upstream.url()),
        sessions.clone(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let config_path = dir.path().join("oauth-egress.toml");
    std::fs::write(&config_path, config_text(&idp.token_url())).map_err(|e| e.to_string())?;
    let config = Config::load(&config_path).map_err(|e| e.to_string())?;
    let app = Arc::new(App::new(config)?);
    let mut running = crate::Running::start(Arc::clone(&app)).await.map_err(|e| e.to_string())?;
    let proxy = running.addr;

    let _ = writeln!(out, "oauth-egress demo: everything below ran for real on 127.0.0.1\n");
    let _ = writeln!(out, "  proxy          http://{proxy}");
    let _ = writeln!(
        out,
        "  token endpoint {}  (verifies each assertion's RS256 signature, iss, aud, sub, exp, jti)",
        idp.token_url()
    );
    let _ = writeln!(out, "  upstream       {}  (accepts only sessions the token endpoint issued)", upstream.url());
    let _ = writeln!(out, "  config         {}\n", config_path.display());

    let client = reqwest::Client::new();
    let shorten = |text: &str| {
        sessions
            .tokens()
            .iter()
            .fold(text.to_owned(), |t, tok| t.replace(tok.as_str(), &Secret::new(tok.as_str()).redacted()))
    };

    // 1. SOAP
    let envelope = query_envelope("alice@corp.example.com", "SELECT Id, Name FROM Account LIMIT 1");
    let _ = writeln!(out, "== 1. SOAP query, as the internal app sends it (its user's email as the session) ==");
    let _ = writeln!(out, "POST /services/Soap/u/58.0\n{envelope}\n");
    let response = client
        .post(format!("http://{proxy}/services/Soap/u/58.0"))
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", "\"\"")
        .body(envelope)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let answer = response.text().await.map_err(|e| e.to_string())?;
    let received = upstream.received();
    let last = received.last().ok_or("upstream received nothing")?;
    let _ = writeln!(
        out,
        "-- what the upstream received (subject of the session: {}) --",
        last.subject.as_deref().unwrap_or("NONE")
    );
    let _ = writeln!(out, "{} {}\n{}\n", last.method, last.uri, shorten(&String::from_utf8_lossy(&last.body)));
    let _ = writeln!(out, "-- answer to the app: HTTP {status} --\n{answer}\n");

    // 2. REST
    let _ = writeln!(out, "== 2. REST query with the requester in X-Requester ==");
    let _ =
        writeln!(out, "GET /services/data/v58.0/query?q=SELECT+Id+FROM+User  X-Requester: alice@corp.example.com\n");
    let response = client
        .get(format!("http://{proxy}/services/data/v58.0/query?q=SELECT+Id+FROM+User"))
        .header("X-Requester", "alice@corp.example.com")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let answer = response.text().await.map_err(|e| e.to_string())?;
    let received = upstream.received();
    let last = received.last().ok_or("upstream received nothing")?;
    let auth = last.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("NONE");
    let _ = writeln!(out, "-- what the upstream received --");
    let _ = writeln!(
        out,
        "{} {}\nAuthorization: {}\nX-Requester present: {}\n",
        last.method,
        last.uri,
        shorten(auth),
        last.headers.contains_key("x-requester")
    );
    let _ = writeln!(out, "-- answer to the app: HTTP {status} --\n{answer}\n");

    // 3. Refused
    let _ = writeln!(out, "== 3. A requester with no subject mapping is refused before any token work ==");
    let response = client
        .post(format!("http://{proxy}/services/Soap/u/58.0"))
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(query_envelope("mallory", "SELECT Id FROM Account"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let answer = response.text().await.map_err(|e| e.to_string())?;
    let _ = writeln!(out, "-- answer to the app: HTTP {status} --\n{answer}\n");

    let _ = writeln!(
        out,
        "== Summary ==\n  token exchanges at the endpoint: {} (one per subject: alice's SOAP and REST calls shared one token)\n  requests the upstream received: {}",
        idp.issued(),
        upstream.received().len()
    );
    running.stop().await.map_err(|e| e.to_string())?;
    Ok(out)
}
