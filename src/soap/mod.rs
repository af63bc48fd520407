//! SOAP: envelope versions, the WSDL model, the streaming envelope pass and fault bodies.
//!
//! What lives here knows XML and SOAP; it knows nothing of tokens, routes or HTTP clients.

pub mod envelope;
pub mod fault;
pub mod schema;
pub mod simple;
pub mod tree;
pub mod validate;
pub mod wsdl;

use std::fmt;

/// A qualified name split into prefix and local name (`("", name)` without a prefix), without
/// a `memchr` call (names are short).
#[inline]
pub(crate) fn split_qname(name: &str) -> (&str, &str) {
    match name.bytes().position(|b| b == b':') {
        Some(i) => (&name[..i], &name[i + 1..]),
        None => ("", name),
    }
}

/// `v` emptied, as a vector of `U`, keeping its allocation when `T` and `U` are laid out alike
/// (the standard library collects a vector's own iterator in place). How the envelope pass keeps
/// its buffers on the thread between requests: their elements borrow one request, so they are
/// emptied and relabelled `'static` when put aside and relabelled to the next request's lifetime
/// when taken. Nothing is mapped (the vector is empty); were the allocation not kept, this would
/// only allocate again.
pub(crate) fn relabel<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

/// `relabel`, for a buffer put aside on the thread: one grown past 64 KiB by an unusually large
/// request is freed instead, so that what a thread keeps stays small.
pub(crate) fn set_aside<T, U>(v: Vec<T>) -> Vec<U> {
    if v.capacity().saturating_mul(std::mem::size_of::<T>()) > 64 * 1024 { Vec::new() } else { relabel(v) }
}

pub const SOAP11_ENV_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const SOAP12_ENV_NS: &str = "http://www.w3.org/2003/05/soap-envelope";

/// The SOAP version of an envelope or a WSDL binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SoapVersion {
    V11,
    V12,
}

impl SoapVersion {
    pub fn from_envelope_ns(ns: &[u8]) -> Option<Self> {
        match ns {
            n if n == SOAP11_ENV_NS.as_bytes() => Some(SoapVersion::V11),
            n if n == SOAP12_ENV_NS.as_bytes() => Some(SoapVersion::V12),
            _ => None,
        }
    }

    pub fn envelope_ns(self) -> &'static str {
        match self {
            SoapVersion::V11 => SOAP11_ENV_NS,
            SoapVersion::V12 => SOAP12_ENV_NS,
        }
    }

    /// The version a request claims by its `Content-Type`, used when the body cannot tell
    /// (too large, not XML): `application/soap+xml` is SOAP 1.2, anything else SOAP 1.1.
    pub fn from_content_type(content_type: Option<&str>) -> Self {
        match content_type {
            Some(ct) if ct.trim_start().get(..20).is_some_and(|t| t.eq_ignore_ascii_case("application/soap+xml")) => {
                SoapVersion::V12
            }
            _ => SoapVersion::V11,
        }
    }
}

impl fmt::Display for SoapVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SoapVersion::V11 => "SOAP 1.1",
            SoapVersion::V12 => "SOAP 1.2",
        })
    }
}

/// A namespace-qualified XML name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QName {
    pub ns: String,
    pub local: String,
}

impl QName {
    pub fn new(ns: impl Into<String>, local: impl Into<String>) -> Self {
        QName { ns: ns.into(), local: local.into() }
    }
}

impl fmt::Display for QName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ns.is_empty() { f.write_str(&self.local) } else { write!(f, "{{{}}}{}", self.ns, self.local) }
    }
}

/// Escapes text for an XML attribute value (`<`, `>`, `&`, `'`, `"`).
pub fn escape_xml(text: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(text)
}

/// Escapes text for an XML text node (`<`, `>`, `&`), leaving quotes readable. Text with none
/// of them (an access token, every request) is found so with one `memchr3` instead of a loop
/// over its bytes.
pub fn escape_text(text: &str) -> std::borrow::Cow<'_, str> {
    match memchr::memchr3(b'<', b'>', b'&', text.as_bytes()) {
        None => std::borrow::Cow::Borrowed(text),
        Some(_) => quick_xml::escape::partial_escape(text),
    }
}
