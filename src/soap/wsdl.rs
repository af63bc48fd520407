//! WSDL 1.1 → the operations a SOAP route accepts. Runs at start-up and on `check`, never per request.
//!
//! The loader reads the WSDL (and the local files it imports with `wsdl:import` / `xsd:import` /
//! `xsd:include`) into a small element tree, then resolves bindings → portTypes → messages into one
//! list of operations, each with its SOAP version, `soapAction` and the body element a request must
//! carry. Schema types are not compiled here: the schema validator builds on this model.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use super::{QName, SoapVersion};

const WSDL_NS: &str = "http://schemas.xmlsoap.org/wsdl/";
const WSDL_SOAP11_NS: &str = "http://schemas.xmlsoap.org/wsdl/soap/";
const WSDL_SOAP12_NS: &str = "http://schemas.xmlsoap.org/wsdl/soap12/";
const XSD_NS: &str = "http://www.w3.org/2001/XMLSchema";
/// Imports nest at most this deep; deeper is surely a loop the visited set did not catch.
const MAX_IMPORT_DEPTH: usize = 16;

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct WsdlError {
    pub path: PathBuf,
    pub message: String,
}

/// `document` (the body holds a schema element) or `rpc` (the body holds an element named after
/// the operation, in the `soap:body` namespace).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Document,
    Rpc,
}

/// One operation of one SOAP binding.
#[derive(Clone, Debug)]
pub struct Operation {
    pub name: String,
    pub binding: String,
    pub version: SoapVersion,
    pub style: Style,
    /// The binding's `soapAction`; `None` where it declares none or an empty one.
    pub soap_action: Option<String>,
    /// The element a request's `Body` must hold.
    pub body: QName,
    /// `use="encoded"` (SOAP section 5 encoding): the operation is known, its content unchecked.
    pub encoded: bool,
}

/// A port of a service: where the WSDL says the endpoint is.
#[derive(Clone, Debug)]
pub struct Port {
    pub service: String,
    pub name: String,
    pub binding: String,
    pub address: Option<String>,
}

/// A compiled WSDL.
#[derive(Debug)]
pub struct Wsdl {
    pub target_namespace: String,
    pub operations: Vec<Operation>,
    pub ports: Vec<Port>,
    /// Top-level schema elements by local name → their namespaces.
    global_elements: HashMap<String, Vec<String>>,
    by_body: HashMap<QName, Vec<usize>>,
}

/// Why a request's body element does not name an operation.
#[derive(Debug, PartialEq, Eq)]
pub enum OperationMismatch {
    /// No binding of the WSDL has an operation with this body element.
    Unknown,
    /// The operation exists, but only in bindings of the other SOAP version.
    WrongVersion {
        operation: String,
        bound: SoapVersion,
    },
}

impl Wsdl {
    pub fn load(path: &Path) -> Result<Wsdl, WsdlError> {
        let mut defs = Definitions::default();
        let mut visited = HashSet::new();
        load_document(path, 0, &mut visited, &mut defs)?;
        defs.compile(path)
    }

    /// The operation a request with this envelope version and body element invokes.
    pub fn operation_for(
        &self,
        version: SoapVersion,
        body: &QName,
    ) -> Result<&Operation, OperationMismatch> {
        let candidates = self.by_body.get(body).ok_or(OperationMismatch::Unknown)?;
        let mut other = None;
        for &i in candidates {
            let op = &self.operations[i];
            if op.version == version {
                return Ok(op);
            }
            other = Some(op);
        }
        match other {
            Some(op) => Err(OperationMismatch::WrongVersion {
                operation: op.name.clone(),
                bound: op.version,
            }),
            None => Err(OperationMismatch::Unknown),
        }
    }

    /// The namespace of the top-level schema element with this local name, when exactly one
    /// schema declares it (used to write a `SessionHeader` into an envelope that has none).
    pub fn element_namespace(&self, local: &str) -> Option<&str> {
        match self.global_elements.get(local).map(Vec::as_slice) {
            Some([ns]) => Some(ns),
            _ => None,
        }
    }

    /// The SOAP versions the WSDL binds.
    pub fn versions(&self) -> Vec<SoapVersion> {
        let mut v: Vec<SoapVersion> = Vec::new();
        for op in &self.operations {
            if !v.contains(&op.version) {
                v.push(op.version);
            }
        }
        v
    }
}

// === the element tree ===

/// An element of a WSDL or schema file with the namespace bindings in scope at it.
#[derive(Debug)]
struct Node {
    name: QName,
    attrs: Vec<(String, String)>,
    scope: Rc<Vec<(String, String)>>,
    children: Vec<Node>,
}

impl Node {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn children_named<'a>(
        &'a self,
        ns: &'a str,
        local: &'a str,
    ) -> impl Iterator<Item = &'a Node> + 'a {
        self.children
            .iter()
            .filter(move |c| c.name.ns == ns && c.name.local == local)
    }

    fn children_in<'a>(&'a self, ns: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name.ns == ns)
    }

    /// Resolves a QName-valued attribute (`tns:query`) with the bindings in scope here.
    fn resolve_qname(&self, value: &str) -> Option<QName> {
        let (prefix, local) = match value.split_once(':') {
            Some((p, l)) => (p, l),
            None => ("", value),
        };
        let ns = self
            .scope
            .iter()
            .rev()
            .find(|(p, _)| p == prefix)
            .map(|(_, ns)| ns.clone());
        match (ns, prefix) {
            (Some(ns), _) => Some(QName::new(ns, local)),
            (None, "") => Some(QName::new("", local)),
            (None, _) => None,
        }
    }
}

fn parse_tree(path: &Path, text: &str) -> Result<Node, WsdlError> {
    let err = |message: String| WsdlError {
        path: path.to_path_buf(),
        message,
    };
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Node> = Vec::new();
    let root_scope: Rc<Vec<(String, String)>> = Rc::new(vec![(
        "xml".to_owned(),
        "http://www.w3.org/XML/1998/namespace".to_owned(),
    )]);
    loop {
        let position = reader.buffer_position();
        let (resolved, event) = reader
            .read_resolved_event()
            .map_err(|e| err(format!("not well-formed XML near byte {position}: {e}")))?;
        let ns = match resolved {
            ResolveResult::Bound(ns) => String::from_utf8_lossy(ns.as_ref()).into_owned(),
            ResolveResult::Unbound => String::new(),
            ResolveResult::Unknown(p) => {
                return Err(err(format!(
                    "undeclared namespace prefix '{}' near byte {position}",
                    String::from_utf8_lossy(&p)
                )));
            }
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let parent_scope = stack
                    .last()
                    .map(|n| n.scope.clone())
                    .unwrap_or_else(|| root_scope.clone());
                let mut attrs = Vec::new();
                let mut declared = Vec::new();
                for attr in e.attributes() {
                    let attr =
                        attr.map_err(|e| err(format!("bad attribute near byte {position}: {e}")))?;
                    let key = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
                    let value = attr
                        .unescape_value()
                        .map_err(|e| err(format!("bad attribute value near byte {position}: {e}")))?
                        .into_owned();
                    if key == "xmlns" {
                        declared.push((String::new(), value));
                    } else if let Some(prefix) = key.strip_prefix("xmlns:") {
                        declared.push((prefix.to_owned(), value));
                    } else {
                        attrs.push((key, value));
                    }
                }
                let scope = if declared.is_empty() {
                    parent_scope
                } else {
                    let mut s = (*parent_scope).clone();
                    s.extend(declared);
                    Rc::new(s)
                };
                let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                let node = Node {
                    name: QName::new(ns, local),
                    attrs,
                    scope,
                    children: Vec::new(),
                };
                if matches!(event, Event::Start(_)) {
                    stack.push(node);
                } else {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(node),
                        None => return Ok(node),
                    }
                }
            }
            Event::End(_) => {
                let node = stack
                    .pop()
                    .ok_or_else(|| err("unbalanced end tag".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Ok(node),
                }
            }
            Event::Eof => return Err(err("no root element".into())),
            _ => {}
        }
    }
}

// === definitions gathered from the WSDL and the files it imports ===

#[derive(Default)]
struct Definitions {
    target_namespace: Option<String>,
    messages: HashMap<QName, Vec<Part>>,
    port_types: HashMap<QName, HashMap<String, QName>>,
    bindings: Vec<Binding>,
    ports: Vec<Port>,
    global_elements: BTreeMap<String, Vec<String>>,
}

struct Part {
    name: String,
    element: Option<QName>,
}

struct Binding {
    name: String,
    port_type: QName,
    version: SoapVersion,
    style: Style,
    operations: Vec<BindingOperation>,
}

struct BindingOperation {
    name: String,
    soap_action: Option<String>,
    style: Option<Style>,
    body_parts: Option<Vec<String>>,
    body_namespace: Option<String>,
    encoded: bool,
}

fn load_document(
    path: &Path,
    depth: usize,
    visited: &mut HashSet<PathBuf>,
    defs: &mut Definitions,
) -> Result<(), WsdlError> {
    let err = |message: String| WsdlError {
        path: path.to_path_buf(),
        message,
    };
    if depth > MAX_IMPORT_DEPTH {
        return Err(err(format!("imports nest deeper than {MAX_IMPORT_DEPTH}")));
    }
    let canonical = path
        .canonicalize()
        .map_err(|e| err(format!("cannot open: {e}")))?;
    if !visited.insert(canonical) {
        return Ok(());
    }
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let text =
        String::from_utf8(bytes).map_err(|_| err("not UTF-8 (WSDLs must be UTF-8)".into()))?;
    let root = parse_tree(path, &text)?;
    let base = path.parent().unwrap_or(Path::new("."));
    if root.name.ns == XSD_NS && root.name.local == "schema" {
        return load_schema(&root, base, depth, visited, defs);
    }
    if root.name.ns != WSDL_NS || root.name.local != "definitions" {
        return Err(err(format!(
            "root element is {}, not a WSDL 1.1 definitions element",
            root.name
        )));
    }
    let tns = root.attr("targetNamespace").unwrap_or_default().to_owned();
    if defs.target_namespace.is_none() {
        defs.target_namespace = Some(tns.clone());
    }
    for import in root.children_named(WSDL_NS, "import") {
        if let Some(location) = import.attr("location") {
            load_document(
                &local_import(path, base, location)?,
                depth + 1,
                visited,
                defs,
            )?;
        }
    }
    for types in root.children_named(WSDL_NS, "types") {
        for schema in types.children_named(XSD_NS, "schema") {
            load_schema(schema, base, depth, visited, defs)?;
        }
    }
    for message in root.children_named(WSDL_NS, "message") {
        let Some(name) = message.attr("name") else {
            continue;
        };
        let parts = message
            .children_named(WSDL_NS, "part")
            .map(|p| Part {
                name: p.attr("name").unwrap_or_default().to_owned(),
                element: p.attr("element").and_then(|v| p.resolve_qname(v)),
            })
            .collect();
        defs.messages.insert(QName::new(tns.clone(), name), parts);
    }
    for port_type in root.children_named(WSDL_NS, "portType") {
        let Some(name) = port_type.attr("name") else {
            continue;
        };
        let mut ops = HashMap::new();
        for op in port_type.children_named(WSDL_NS, "operation") {
            let input = op.children_named(WSDL_NS, "input").next();
            if let (Some(op_name), Some(msg)) = (
                op.attr("name"),
                input
                    .and_then(|i| i.attr("message"))
                    .and_then(|m| op.resolve_qname(m)),
            ) {
                ops.insert(op_name.to_owned(), msg);
            }
        }
        defs.port_types.insert(QName::new(tns.clone(), name), ops);
    }
    for binding in root.children_named(WSDL_NS, "binding") {
        if let Some(b) = read_binding(binding).map_err(err)? {
            defs.bindings.push(b);
        }
    }
    for service in root.children_named(WSDL_NS, "service") {
        let service_name = service.attr("name").unwrap_or_default();
        for port in service.children_named(WSDL_NS, "port") {
            let address = port
                .children
                .iter()
                .find(|c| c.name.local == "address")
                .and_then(|a| a.attr("location"))
                .map(str::to_owned);
            defs.ports.push(Port {
                service: service_name.to_owned(),
                name: port.attr("name").unwrap_or_default().to_owned(),
                binding: port.attr("binding").unwrap_or_default().to_owned(),
                address,
            });
        }
    }
    Ok(())
}

fn load_schema(
    schema: &Node,
    base: &Path,
    depth: usize,
    visited: &mut HashSet<PathBuf>,
    defs: &mut Definitions,
) -> Result<(), WsdlError> {
    let tns = schema.attr("targetNamespace").unwrap_or_default();
    for element in schema.children_named(XSD_NS, "element") {
        if let Some(name) = element.attr("name") {
            let spaces = defs.global_elements.entry(name.to_owned()).or_default();
            if !spaces.iter().any(|s| s == tns) {
                spaces.push(tns.to_owned());
            }
        }
    }
    for import in schema
        .children_in(XSD_NS)
        .filter(|c| c.name.local == "import" || c.name.local == "include")
    {
        if let Some(location) = import.attr("schemaLocation") {
            let path = local_import(base, base, location)?;
            load_document(&path, depth + 1, visited, defs)?;
        }
    }
    Ok(())
}

/// Imports are resolved as local files next to the importing one; remote locations are refused
/// so that loading a WSDL never reaches the network.
fn local_import(from: &Path, base: &Path, location: &str) -> Result<PathBuf, WsdlError> {
    if location.contains("://") {
        return Err(WsdlError {
            path: from.to_path_buf(),
            message: format!(
                "imports remote location '{location}': save it next to the WSDL and import it by file name"
            ),
        });
    }
    Ok(base.join(location))
}

fn read_binding(binding: &Node) -> Result<Option<Binding>, String> {
    let name = binding.attr("name").unwrap_or_default().to_owned();
    let soap = binding.children.iter().find(|c| c.name.local == "binding");
    let (version, soap_ns) = match soap.map(|s| s.name.ns.as_str()) {
        Some(WSDL_SOAP11_NS) => (SoapVersion::V11, WSDL_SOAP11_NS),
        Some(WSDL_SOAP12_NS) => (SoapVersion::V12, WSDL_SOAP12_NS),
        // HTTP GET/POST bindings and others carry no SOAP operations.
        _ => return Ok(None),
    };
    let style = match soap.and_then(|s| s.attr("style")) {
        Some("rpc") => Style::Rpc,
        _ => Style::Document,
    };
    let port_type = binding
        .attr("type")
        .and_then(|t| binding.resolve_qname(t))
        .ok_or_else(|| format!("binding '{name}' has no resolvable type"))?;
    let mut operations = Vec::new();
    for op in binding.children_named(WSDL_NS, "operation") {
        let op_name = op.attr("name").unwrap_or_default().to_owned();
        let soap_op = op.children_named(soap_ns, "operation").next();
        let body = op
            .children_named(WSDL_NS, "input")
            .next()
            .and_then(|input| input.children_named(soap_ns, "body").next());
        operations.push(BindingOperation {
            soap_action: soap_op
                .and_then(|s| s.attr("soapAction"))
                .filter(|a| !a.is_empty())
                .map(str::to_owned),
            style: match soap_op.and_then(|s| s.attr("style")) {
                Some("rpc") => Some(Style::Rpc),
                Some("document") => Some(Style::Document),
                _ => None,
            },
            body_parts: body
                .and_then(|b| b.attr("parts"))
                .map(|p| p.split_whitespace().map(str::to_owned).collect()),
            body_namespace: body.and_then(|b| b.attr("namespace")).map(str::to_owned),
            encoded: body.and_then(|b| b.attr("use")) == Some("encoded"),
            name: op_name,
        });
    }
    Ok(Some(Binding {
        name,
        port_type,
        version,
        style,
        operations,
    }))
}

impl Definitions {
    fn compile(self, path: &Path) -> Result<Wsdl, WsdlError> {
        let err = |message: String| WsdlError {
            path: path.to_path_buf(),
            message,
        };
        let mut operations = Vec::new();
        for binding in &self.bindings {
            let port_type = self.port_types.get(&binding.port_type).ok_or_else(|| {
                err(format!(
                    "binding '{}' refers to unknown portType {}",
                    binding.name, binding.port_type
                ))
            })?;
            for op in &binding.operations {
                let style = op.style.unwrap_or(binding.style);
                let body = match style {
                    Style::Rpc => QName::new(
                        op.body_namespace.clone().unwrap_or_default(),
                        op.name.clone(),
                    ),
                    Style::Document => {
                        let message = port_type.get(&op.name).ok_or_else(|| {
                            err(format!(
                                "operation '{}' of binding '{}' is not in its portType",
                                op.name, binding.name
                            ))
                        })?;
                        let parts = self.messages.get(message).ok_or_else(|| {
                            err(format!(
                                "operation '{}' uses unknown message {message}",
                                op.name
                            ))
                        })?;
                        let mut body_parts = parts.iter().filter(|p| match &op.body_parts {
                            Some(names) => names.contains(&p.name),
                            None => true,
                        });
                        match (body_parts.next(), body_parts.next()) {
                            (
                                Some(Part {
                                    element: Some(element),
                                    ..
                                }),
                                None,
                            ) => element.clone(),
                            (Some(_), None) => {
                                return Err(err(format!(
                                    "document operation '{}' has a body part declared by type, not element; \
                                     only document/literal with element parts is supported",
                                    op.name
                                )));
                            }
                            (None, _) => QName::new("", ""),
                            (Some(_), Some(_)) => {
                                return Err(err(format!(
                                    "document operation '{}' has several body parts; WS-I requires one",
                                    op.name
                                )));
                            }
                        }
                    }
                };
                operations.push(Operation {
                    name: op.name.clone(),
                    binding: binding.name.clone(),
                    version: binding.version,
                    style,
                    soap_action: op.soap_action.clone(),
                    body,
                    encoded: op.encoded,
                });
            }
        }
        if operations.is_empty() {
            return Err(err(
                "declares no SOAP 1.1 or SOAP 1.2 binding with operations".into(),
            ));
        }
        let mut by_body: HashMap<QName, Vec<usize>> = HashMap::new();
        for (i, op) in operations.iter().enumerate() {
            by_body.entry(op.body.clone()).or_default().push(i);
        }
        Ok(Wsdl {
            target_namespace: self.target_namespace.unwrap_or_default(),
            operations,
            ports: self.ports,
            global_elements: self.global_elements.into_iter().collect(),
            by_body,
        })
    }
}
