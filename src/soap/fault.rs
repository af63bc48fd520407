//! SOAP 1.1 and 1.2 fault bodies. Only `proxy::respond` decides when to send one.

use super::{SoapVersion, escape_text};

/// Who the fault blames: the caller (`Client`/`Sender`) or the server side (`Server`/`Receiver`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultSide {
    Caller,
    /// A header block marked `mustUnderstand` that is not understood: its own fault code.
    MustUnderstand,
    Server,
}

/// Builds a complete fault envelope. `code` is oauth-egress's machine-readable error code and goes
/// into the fault detail; `reason` is the human sentence naming what was wrong.
pub fn fault_body(version: SoapVersion, side: FaultSide, code: &str, reason: &str) -> String {
    let reason = escape_text(reason);
    let code = escape_text(code);
    match version {
        SoapVersion::V11 => {
            let faultcode = match side {
                FaultSide::Caller => "soapenv:Client",
                FaultSide::MustUnderstand => "soapenv:MustUnderstand",
                FaultSide::Server => "soapenv:Server",
            };
            format!(
                concat!(
                    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                    r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">"#,
                    "<soapenv:Body><soapenv:Fault><faultcode>{}</faultcode>",
                    "<faultstring>{}</faultstring><faultactor>oauth-egress</faultactor>",
                    r#"<detail><oe:error xmlns:oe="urn:oauth-egress">{}</oe:error></detail>"#,
                    "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
                ),
                faultcode, reason, code
            )
        }
        SoapVersion::V12 => {
            let value = match side {
                FaultSide::Caller => "env:Sender",
                FaultSide::MustUnderstand => "env:MustUnderstand",
                FaultSide::Server => "env:Receiver",
            };
            format!(
                concat!(
                    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                    r#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope">"#,
                    "<env:Body><env:Fault><env:Code><env:Value>{}</env:Value></env:Code>",
                    r#"<env:Reason><env:Text xml:lang="en">{}</env:Text></env:Reason>"#,
                    "<env:Role>urn:oauth-egress</env:Role>",
                    r#"<env:Detail><oe:error xmlns:oe="urn:oauth-egress">{}</oe:error></env:Detail>"#,
                    "</env:Fault></env:Body></env:Envelope>"
                ),
                value, reason, code
            )
        }
    }
}

/// The HTTP status SOAP prescribes for a fault: SOAP 1.1 always 500; SOAP 1.2 400 for the
/// sender's faults and 500 for the receiver's.
pub fn fault_status(version: SoapVersion, side: FaultSide) -> u16 {
    match (version, side) {
        (SoapVersion::V11, _) => 500,
        (SoapVersion::V12, FaultSide::Caller) => 400,
        (SoapVersion::V12, FaultSide::Server | FaultSide::MustUnderstand) => 500,
    }
}

/// The `Content-Type` of a fault of this version.
pub fn content_type(version: SoapVersion) -> &'static str {
    match version {
        SoapVersion::V11 => "text/xml; charset=utf-8",
        SoapVersion::V12 => "application/soap+xml; charset=utf-8",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_is_escaped() {
        let body = fault_body(SoapVersion::V11, FaultSide::Caller, "x", "a <b> & c");
        assert!(body.contains("a &lt;b&gt; &amp; c"));
        assert!(body.contains("soapenv:Client"));
    }
}
