//! An upstream on loopback that acts like the SaaS for what the proxy touches: a SOAP request must
//! carry a live session in `SessionHeader/sessionId` (else `sf:INVALID_SESSION_ID`, HTTP 500), a
//! REST request a live `Authorization: Bearer` (else 401 `INVALID_SESSION_ID`). It records every
//! request it receives. `?bytes=N` on a REST call streams back N bytes, for streaming checks.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use quick_xml::events::Event;
use quick_xml::reader::NsReader;
use serde_json::json;
use tokio::sync::oneshot;

use super::{Sessions, respond};
use crate::proxy::ProxyBody;
use crate::soap::{SOAP12_ENV_NS, escape_xml};

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Whose session it carried, if a live one.
    pub subject: Option<String>,
}

struct State {
    sessions: Sessions,
    /// Local name of the element that carries the session in a SOAP request.
    session_element: String,
    received: Mutex<Vec<Received>>,
    /// Requests that reached the handler, answered or held.
    arrived: std::sync::atomic::AtomicUsize,
    gate: tokio::sync::watch::Sender<bool>,
    /// Refuse every session, as a SaaS does whose sessions for the org were all revoked.
    refuse_all: std::sync::atomic::AtomicBool,
}

/// A running loopback upstream. Dropping it stops it.
pub struct LoopbackUpstream {
    pub addr: SocketAddr,
    scheme: &'static str,
    state: Arc<State>,
    _stop: oneshot::Sender<()>,
}

impl LoopbackUpstream {
    /// An upstream over plain HTTP that reads SOAP sessions from `sessionId`, as Salesforce does.
    pub async fn start(sessions: Sessions) -> std::io::Result<LoopbackUpstream> {
        Self::start_with(sessions, "sessionId", None).await
    }

    /// An upstream that reads SOAP sessions from the element with this local name, over TLS
    /// when given an acceptor.
    pub async fn start_with(
        sessions: Sessions,
        session_element: &str,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<LoopbackUpstream> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            sessions,
            session_element: session_element.to_owned(),
            received: Mutex::default(),
            arrived: std::sync::atomic::AtomicUsize::new(0),
            gate: tokio::sync::watch::channel(true).0,
            refuse_all: std::sync::atomic::AtomicBool::new(false),
        });
        let handler_state = Arc::clone(&state);
        let handler = move |req, _| {
            let state = Arc::clone(&handler_state);
            async move { handle(&state, req).await }
        };
        let stop = crate::server::spawn(listener, tls, handler);
        Ok(LoopbackUpstream { addr, scheme, state, _stop: stop })
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Hold every request before looking at it, until `release`.
    pub fn hold(&self) {
        self.state.gate.send_replace(false);
    }

    pub fn release(&self) {
        self.state.gate.send_replace(true);
    }

    /// Answer every request as if its session were invalid (`false`: check sessions again).
    pub fn refuse_all(&self, refuse: bool) {
        self.state.refuse_all.store(refuse, std::sync::atomic::Ordering::SeqCst);
    }

    /// Requests that have reached the upstream, including those being held.
    pub fn arrived(&self) -> usize {
        self.state.arrived.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every request received so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn handle(state: &State, req: Request<crate::server::RequestBody>) -> Response<ProxyBody> {
    state.arrived.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let _ = state.gate.subscribe().wait_for(|open| *open).await;
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let is_soap =
        parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| ct.contains("xml"));
    let credential = if is_soap {
        session_id(&body, &state.session_element)
    } else {
        parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned)
    };
    let subject = credential
        .as_deref()
        .and_then(|t| state.sessions.subject_of(t))
        .filter(|_| !state.refuse_all.load(std::sync::atomic::Ordering::SeqCst));
    state.received.lock().unwrap_or_else(|p| p.into_inner()).push(Received {
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        headers: parts.headers.clone(),
        body: body.clone(),
        subject: subject.clone(),
    });
    if is_soap { soap_answer(&body, subject.as_deref()) } else { rest_answer(&parts.uri, subject.as_deref()) }
}

/// The text of the first element named `element`, in any namespace.
fn session_id(body: &[u8], element: &str) -> Option<String> {
    let mut reader = NsReader::from_reader(body);
    let mut inside = false;
    let mut text = String::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) if e.local_name().as_ref() == element.as_bytes() => inside = true,
            Ok(Event::Text(t)) if inside => text.push_str(&t.decode().ok()?),
            Ok(Event::GeneralRef(r)) if inside => {
                let ch = match &*r {
                    b"amp" => '&',
                    b"lt" => '<',
                    b"gt" => '>',
                    b"quot" => '"',
                    b"apos" => '\'',
                    _ => r.resolve_char_ref().ok()??,
                };
                text.push(ch);
            }
            Ok(Event::End(_)) if inside => return Some(text),
            Ok(Event::Eof) | Err(_) => return None,
            _ => {}
        }
    }
}

/// The local name of the Body's first element: the operation invoked.
fn operation(body: &[u8]) -> String {
    let mut reader = NsReader::from_reader(body);
    let mut depth = 0;
    let mut in_body = false;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if in_body {
                    return local;
                }
                in_body = depth == 1 && local == "Body";
                depth += 1;
            }
            Ok(Event::End(_)) => depth -= 1,
            Ok(Event::Eof) | Err(_) => return "unknown".to_owned(),
            _ => {}
        }
    }
}

fn soap_answer(body: &[u8], subject: Option<&str>) -> Response<ProxyBody> {
    let v12 = body.windows(SOAP12_ENV_NS.len()).any(|w| w == SOAP12_ENV_NS.as_bytes());
    let (env_ns, content_type) = if v12 {
        (SOAP12_ENV_NS, "application/soap+xml; charset=utf-8")
    } else {
        (crate::soap::SOAP11_ENV_NS, "text/xml; charset=utf-8")
    };
    let Some(subject) = subject else {
        let fault = if v12 {
            "<soapenv:Fault><soapenv:Code><soapenv:Value>soapenv:Sender</soapenv:Value><soapenv:Subcode><soapenv:Value>sf:INVALID_SESSION_ID</soapenv:Value></soapenv:Subcode></soapenv:Code><soapenv:Reason><soapenv:Text xml:lang=\"en\">INVALID_SESSION_ID: Invalid Session ID found in SessionHeader: Illegal Session</soapenv:Text></soapenv:Reason></soapenv:Fault>"
        } else {
            "<soapenv:Fault><faultcode>sf:INVALID_SESSION_ID</faultcode><faultstring>INVALID_SESSION_ID: Invalid Session ID found in SessionHeader: Illegal Session</faultstring><detail><sf:UnexpectedErrorFault xsi:type=\"sf:UnexpectedErrorFault\"><sf:exceptionCode>INVALID_SESSION_ID</sf:exceptionCode><sf:exceptionMessage>Invalid Session ID found in SessionHeader: Illegal Session</sf:exceptionMessage></sf:UnexpectedErrorFault></detail></soapenv:Fault>"
        };
        let envelope = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{env_ns}" xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>{fault}</soapenv:Body></soapenv:Envelope>"#
        );
        return respond(StatusCode::INTERNAL_SERVER_ERROR, content_type, envelope);
    };
    let op = operation(body);
    let result = match op.as_str() {
        "query" | "queryAll" | "queryMore" => format!(
            r#"<result xsi:type="QueryResult"><done>true</done><queryLocator xsi:nil="true"/><records xsi:type="sf:sObject"><sf:type>User</sf:type><sf:Id>005LOOPBACK000001</sf:Id><sf:Username>{}</sf:Username></records><size>1</size></result>"#,
            escape_xml(subject)
        ),
        _ => format!(
            r#"<result><id>001LOOPBACK000001</id><success>true</success><caller>{}</caller></result>"#,
            escape_xml(subject)
        ),
    };
    let envelope = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{env_ns}" xmlns="urn:partner.soap.sforce.com" xmlns:sf="urn:sobject.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><{op}Response>{result}</{op}Response></soapenv:Body></soapenv:Envelope>"#
    );
    respond(StatusCode::OK, content_type, envelope)
}

fn rest_answer(uri: &Uri, subject: Option<&str>) -> Response<ProxyBody> {
    let Some(subject) = subject else {
        let body = json!([{ "message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID" }]);
        return respond(StatusCode::UNAUTHORIZED, "application/json", body.to_string());
    };
    let size = uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "bytes").and_then(|(_, v)| v.parse::<usize>().ok())
    });
    if let Some(size) = size {
        // Streamed in chunks, so the proxy must pass a body it never holds whole.
        const CHUNK: usize = 16 * 1024;
        let chunks = (0..size.div_ceil(CHUNK)).map(move |i| {
            let len = CHUNK.min(size - i * CHUNK);
            let data: Vec<u8> = (0..len).map(|j| b'a' + ((i * CHUNK + j) % 26) as u8).collect();
            Ok::<_, crate::proxy::BoxError>(Frame::data(Bytes::from(data)))
        });
        let mut r = Response::new(StreamBody::new(stream::iter(chunks)).boxed());
        r.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/octet-stream"));
        return r;
    }
    let body = json!({
        "totalSize": 1,
        "done": true,
        "records": [{ "attributes": { "type": "User" }, "Username": subject }],
        "path": uri.path(),
        "query": uri.query(),
    });
    respond(StatusCode::OK, "application/json", body.to_string())
}
