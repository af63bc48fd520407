//! The `wsdl` and `validate` commands: the proxy's own WSDL loading and envelope checks run on
//! files, for the person debugging a rejection. What they print is what the proxy would do.

use std::fmt::Write as _;
use std::path::Path;

use crate::config::DEFAULT_SESSION_ELEMENT;
use crate::proxy::error::ProxyError;
use crate::proxy::respond;
use crate::soap::SoapVersion;
use crate::soap::envelope::{self, Limits, Plan};
use crate::soap::validate::Mode;
use crate::soap::wsdl::{Input, Wsdl};

/// Services, ports and operations of a WSDL, one operation a line.
pub fn describe(wsdl: &Wsdl) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "target namespace: {}", wsdl.target_namespace);
    for port in &wsdl.ports {
        let _ = writeln!(
            out,
            "service {} port {} (binding {}) at {}",
            port.service,
            port.name,
            port.binding,
            port.address.as_deref().unwrap_or("-")
        );
    }
    let _ = writeln!(out, "{} operations:", wsdl.operations.len());
    for op in &wsdl.operations {
        let input = match op.input {
            Input::Element(_) | Input::Wrapper(_) => op.body.to_string(),
            Input::Unchecked => format!("{} (encoded: content not checked)", op.body),
        };
        let _ = writeln!(
            out,
            "  {:<40} {}  {:?}  soapAction={}  input={}",
            op.name,
            op.version,
            op.style,
            op.soap_action.as_deref().map(|a| format!("\"{a}\"")).unwrap_or_else(|| "-".into()),
            input
        );
    }
    out
}

/// The outcome of checking one envelope offline.
pub enum Verdict {
    /// `valid: <operation>`.
    Valid(String),
    /// The fault body the proxy would answer with.
    Fault(String),
}

/// Checks `body` as a SOAP route with this WSDL and mode would, before any token work.
pub fn validate(wsdl: &Wsdl, body: &[u8], mode: Mode, action: Option<&str>, limits: &Limits) -> Verdict {
    let session: Vec<String> = DEFAULT_SESSION_ELEMENT.split('/').map(str::to_owned).collect();
    let converted = match envelope::to_utf8(body) {
        Ok(c) => c,
        Err(e) => return fault(e, body),
    };
    let body = converted.as_deref().unwrap_or(body);
    let plan = Plan { requester: None, session: &session, mode, limits, action };
    match envelope::scan(body, &plan, wsdl) {
        Ok(scan) => Verdict::Valid(wsdl.operations[scan.operation].name.to_string()),
        Err(e) => fault(e, body),
    }
}

fn fault(e: envelope::EnvelopeError, body: &[u8]) -> Verdict {
    let version = envelope::sniff_version(body).unwrap_or(SoapVersion::V11);
    let answer = respond::error_response(&ProxyError::Envelope(e), Some(version), "validate");
    // A fault body is one full buffer: collecting it completes at once.
    let collected =
        futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(answer.response.into_body()));
    let text =
        collected.and_then(Result::ok).map(|c| String::from_utf8_lossy(&c.to_bytes()).into_owned()).unwrap_or_default();
    Verdict::Fault(text)
}

/// Loads a WSDL for the commands, with the error as they print it.
pub fn load(path: &Path) -> Result<Wsdl, String> {
    Wsdl::load(path).map_err(|e| e.to_string())
}
