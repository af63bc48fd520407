//! WSDL 1.1 → the operations a SOAP route accepts, and the schema their messages must obey.
//! Runs at start-up and on `check`, never per request.
//!
//! The loader reads the WSDL (and the local files it imports with `wsdl:import`, `xsd:import` and
//! `xsd:include`) into element trees, compiles every schema into one `Schema`, then resolves
//! bindings → portTypes → messages into operations, each with its SOAP version, `soapAction`, the
//! body element a request must carry and where its content is checked from.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::schema::{self, ElemId, Schema, SchemaDoc, TypeId, XSD_NS};
use super::tree::{Node, parse_file};
use super::{QName, SoapVersion};

const WSDL_NS: &str = "http://schemas.xmlsoap.org/wsdl/";
const WSDL_SOAP11_NS: &str = "http://schemas.xmlsoap.org/wsdl/soap/";
const WSDL_SOAP12_NS: &str = "http://schemas.xmlsoap.org/wsdl/soap12/";
/// Namespaces whose schemas are built in: their imports are not fetched.
const BUILT_IN: [&str; 4] = [XSD_NS, schema::SOAP_ENC_NS, schema::XML_NS, WSDL_NS];
/// Imports nest at most this deep; deeper is surely a loop the visited set did not catch.
const MAX_IMPORT_DEPTH: usize = 16;

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct WsdlError {
    pub path: PathBuf,
    pub message: String,
}

/// `document` (the body holds a schema element) or `rpc` (the body holds an element named after
/// the operation, in the `soap:body` namespace, whose children are the message parts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Document,
    Rpc,
}

/// Where a request's body element is checked from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// document/literal: this global element.
    Element(ElemId),
    /// rpc/literal: this wrapper type, a sequence of the parts.
    Wrapper(TypeId),
    /// `use="encoded"`: the operation is known, its content is not checked.
    Unchecked,
}

/// One operation of one SOAP binding.
#[derive(Clone, Debug)]
pub struct Operation {
    pub name: Arc<str>,
    pub binding: String,
    pub version: SoapVersion,
    pub style: Style,
    /// The binding's `soapAction`; `None` where it declares none or an empty one.
    pub soap_action: Option<String>,
    /// The element a request's `Body` must hold.
    pub body: QName,
    pub input: Input,
    /// Header blocks the binding declares for the input (`soap:header`).
    pub headers: Vec<QName>,
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
    pub schema: Schema,
    /// Every header block any binding declares: the headers a route "understands".
    pub header_elements: HashSet<QName>,
    /// Operations by the local name of their body element (looked up once per request, without
    /// allocating a name).
    by_body: rustc_hash::FxHashMap<Box<str>, Vec<usize>>,
}

/// Why a request's body element does not name an operation.
#[derive(Debug, PartialEq, Eq)]
pub enum OperationMismatch {
    /// No binding of the WSDL has an operation with this body element.
    Unknown,
    /// The operation exists, but only in bindings of the other SOAP version.
    WrongVersion { operation: String, bound: SoapVersion },
}

impl Wsdl {
    pub fn load(path: &Path) -> Result<Wsdl, WsdlError> {
        let mut defs = Definitions::default();
        let mut visited = HashSet::new();
        load_document(path, 0, &mut visited, &mut defs)?;
        defs.compile(path)
    }

    /// The operation a request with this envelope version and body element invokes.
    /// The operation (and its index) a request with this envelope version and body element
    /// `{ns}local` invokes.
    pub fn operation_for(
        &self,
        version: SoapVersion,
        ns: &str,
        local: &str,
    ) -> Result<(usize, &Operation), OperationMismatch> {
        let candidates = self.by_body.get(local).ok_or(OperationMismatch::Unknown)?;
        let mut other = None;
        for &i in candidates {
            let op = &self.operations[i];
            if op.body.ns != ns {
                continue;
            }
            if op.version == version {
                return Ok((i, op));
            }
            other = Some(op);
        }
        match other {
            Some(op) => Err(OperationMismatch::WrongVersion { operation: op.name.to_string(), bound: op.version }),
            None => Err(OperationMismatch::Unknown),
        }
    }

    /// The namespace of the top-level schema element with this local name, when exactly one
    /// schema declares it (used to write a `SessionHeader` into an envelope that has none).
    pub fn element_namespace(&self, local: &str) -> Option<&str> {
        let mut found =
            self.schema.elements.iter().filter(|e| e.name.local == local && self.schema.element(&e.name).is_some());
        match (found.next(), found.next()) {
            (Some(e), None) => Some(e.name.ns.as_str()),
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

// === definitions gathered from the WSDL and the files it imports ===

#[derive(Default)]
struct Definitions {
    target_namespace: Option<String>,
    messages: HashMap<QName, Vec<Part>>,
    port_types: HashMap<QName, HashMap<String, QName>>,
    bindings: Vec<Binding>,
    ports: Vec<Port>,
    schemas: Vec<SchemaDoc>,
}

struct Part {
    name: String,
    element: Option<QName>,
    ty: Option<QName>,
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
    /// (message, part) of each `soap:header`.
    headers: Vec<(QName, String)>,
}

fn load_document(
    path: &Path,
    depth: usize,
    visited: &mut HashSet<PathBuf>,
    defs: &mut Definitions,
) -> Result<(), WsdlError> {
    let err = |message: String| WsdlError { path: path.to_path_buf(), message };
    if depth > MAX_IMPORT_DEPTH {
        return Err(err(format!("imports nest deeper than {MAX_IMPORT_DEPTH}")));
    }
    let canonical = path.canonicalize().map_err(|e| err(format!("cannot open: {e}")))?;
    if !visited.insert(canonical) {
        return Ok(());
    }
    let mut root = parse_file(path)?;
    if root.name.ns == XSD_NS && root.name.local == "schema" {
        return add_schema(root, path, None, depth, visited, defs);
    }
    if root.name.ns != WSDL_NS || root.name.local != "definitions" {
        return Err(err(format!("root element is {}, not a WSDL 1.1 definitions element", root.name)));
    }
    let tns = root.attr("targetNamespace").unwrap_or_default().to_owned();
    if defs.target_namespace.is_none() {
        defs.target_namespace = Some(tns.clone());
    }
    for import in root.children_named(WSDL_NS, "import") {
        if let Some(location) = import.attr("location")
            && let Some(file) = local_import(path, import.attr("namespace").unwrap_or_default(), location)?
        {
            load_document(&file, depth + 1, visited, defs)?;
        }
    }
    let mut schemas = Vec::new();
    for types in root.children.iter_mut().filter(|c| c.name.ns == WSDL_NS && c.name.local == "types") {
        for node in std::mem::take(&mut types.children) {
            if node.name.ns == XSD_NS && node.name.local == "schema" {
                schemas.push(node);
            }
        }
    }
    for schema in schemas {
        add_schema(schema, path, None, depth, visited, defs)?;
    }
    for message in root.children_named(WSDL_NS, "message") {
        let Some(name) = message.attr("name") else { continue };
        let parts = message
            .children_named(WSDL_NS, "part")
            .map(|p| Part {
                name: p.attr("name").unwrap_or_default().to_owned(),
                element: p.attr("element").and_then(|v| p.resolve_qname(v)),
                ty: p.attr("type").and_then(|v| p.resolve_qname(v)),
            })
            .collect();
        defs.messages.insert(QName::new(tns.clone(), name), parts);
    }
    for port_type in root.children_named(WSDL_NS, "portType") {
        let Some(name) = port_type.attr("name") else { continue };
        let mut ops = HashMap::new();
        for op in port_type.children_named(WSDL_NS, "operation") {
            let input = op.children_named(WSDL_NS, "input").next();
            if let (Some(op_name), Some(msg)) =
                (op.attr("name"), input.and_then(|i| i.attr("message")).and_then(|m| op.resolve_qname(m)))
            {
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

/// Adds a schema and loads what it imports or includes. `chameleon`: the namespace of the
/// including schema, which an included schema without its own takes on.
fn add_schema(
    mut node: Node,
    file: &Path,
    chameleon: Option<&str>,
    depth: usize,
    visited: &mut HashSet<PathBuf>,
    defs: &mut Definitions,
) -> Result<(), WsdlError> {
    if let (Some(tns), None) = (chameleon, node.attr("targetNamespace")) {
        node.attrs.push(("targetNamespace".to_owned(), tns.to_owned()));
    }
    let tns = node.attr("targetNamespace").unwrap_or_default().to_owned();
    let mut pending = Vec::new();
    for child in node.children.iter().filter(|c| c.name.ns == XSD_NS) {
        let Some(location) = child.attr("schemaLocation") else { continue };
        match child.name.local.as_str() {
            "import" => {
                pending.push((child.attr("namespace").unwrap_or_default().to_owned(), location.to_owned(), None))
            }
            "include" | "redefine" => pending.push((tns.clone(), location.to_owned(), Some(tns.clone()))),
            _ => {}
        }
    }
    defs.schemas.push(SchemaDoc { node, file: file.to_path_buf() });
    for (namespace, location, chameleon) in pending {
        let Some(path) = local_import(file, &namespace, &location)? else { continue };
        if depth + 1 > MAX_IMPORT_DEPTH {
            return Err(WsdlError {
                path: file.to_path_buf(),
                message: format!("imports nest deeper than {MAX_IMPORT_DEPTH}"),
            });
        }
        let canonical = path
            .canonicalize()
            .map_err(|e| WsdlError { path: file.to_path_buf(), message: format!("imports '{location}': {e}") })?;
        if !visited.insert(canonical) {
            continue;
        }
        let root = parse_file(&path)?;
        if root.name.ns == XSD_NS && root.name.local == "schema" {
            add_schema(root, &path, chameleon.as_deref(), depth + 1, visited, defs)?;
        } else {
            return Err(WsdlError { path, message: format!("imported as a schema, but its root is {}", root.name) });
        }
    }
    Ok(())
}

/// An import's file, next to the importing one. Remote locations are refused, so that loading a
/// WSDL never reaches the network; built-in namespaces (XSD, SOAP encoding) are not fetched at all.
fn local_import(from: &Path, namespace: &str, location: &str) -> Result<Option<PathBuf>, WsdlError> {
    if BUILT_IN.contains(&namespace) {
        return Ok(None);
    }
    if location.contains("://") {
        return Err(WsdlError {
            path: from.to_path_buf(),
            message: format!(
                "imports remote location '{location}': save it next to the WSDL and import it by file name"
            ),
        });
    }
    Ok(Some(from.parent().unwrap_or(Path::new(".")).join(location)))
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
        let input = op.children_named(WSDL_NS, "input").next();
        let body = input.and_then(|input| input.children_named(soap_ns, "body").next());
        let headers = input
            .map(|i| {
                i.children_named(soap_ns, "header")
                    .filter_map(|h| Some((h.resolve_qname(h.attr("message")?)?, h.attr("part")?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        operations.push(BindingOperation {
            soap_action: soap_op.and_then(|s| s.attr("soapAction")).filter(|a| !a.is_empty()).map(str::to_owned),
            style: match soap_op.and_then(|s| s.attr("style")) {
                Some("rpc") => Some(Style::Rpc),
                Some("document") => Some(Style::Document),
                _ => None,
            },
            body_parts: body.and_then(|b| b.attr("parts")).map(|p| p.split_whitespace().map(str::to_owned).collect()),
            body_namespace: body.and_then(|b| b.attr("namespace")).map(str::to_owned),
            encoded: body.and_then(|b| b.attr("use")) == Some("encoded"),
            headers,
            name: op_name,
        });
    }
    Ok(Some(Binding { name, port_type, version, style, operations }))
}

impl Definitions {
    fn compile(self, path: &Path) -> Result<Wsdl, WsdlError> {
        let err = |message: String| WsdlError { path: path.to_path_buf(), message };
        let mut schema = schema::compile(&self.schemas).map_err(|e| err(format!("schema: {e}")))?;
        let mut operations = Vec::new();
        let mut header_elements = HashSet::new();
        for binding in &self.bindings {
            let port_type = self.port_types.get(&binding.port_type).ok_or_else(|| {
                err(format!("binding '{}' refers to unknown portType {}", binding.name, binding.port_type))
            })?;
            for op in &binding.operations {
                let style = op.style.unwrap_or(binding.style);
                let message = port_type.get(&op.name).ok_or_else(|| {
                    err(format!("operation '{}' of binding '{}' is not in its portType", op.name, binding.name))
                })?;
                let parts = self
                    .messages
                    .get(message)
                    .ok_or_else(|| err(format!("operation '{}' uses unknown message {message}", op.name)))?;
                let body_parts: Vec<&Part> = parts
                    .iter()
                    .filter(|p| match &op.body_parts {
                        Some(names) => names.contains(&p.name),
                        // Parts bound as headers are not in the body.
                        None => !op.headers.iter().any(|(m, part)| m == message && *part == p.name),
                    })
                    .collect();
                let mut headers = Vec::new();
                for (m, part) in &op.headers {
                    let element = self
                        .messages
                        .get(m)
                        .and_then(|ps| ps.iter().find(|p| p.name == *part))
                        .and_then(|p| p.element.clone())
                        .ok_or_else(|| {
                            err(format!("operation '{}' binds header part {m}/{part}, which has no element", op.name))
                        })?;
                    header_elements.insert(element.clone());
                    headers.push(element);
                }
                let (body, input) = match style {
                    Style::Rpc => {
                        let body = QName::new(op.body_namespace.clone().unwrap_or_default(), op.name.clone());
                        let input = if op.encoded {
                            Input::Unchecked
                        } else {
                            let mut fields = Vec::new();
                            for p in &body_parts {
                                let field = match (&p.element, &p.ty) {
                                    (Some(e), _) => {
                                        let id = schema.element(e).ok_or_else(|| {
                                            err(format!("part '{}' names unknown element {e}", p.name))
                                        })?;
                                        (e.clone(), schema.elements[id].ty)
                                    }
                                    (None, Some(t)) => {
                                        let ty = schema
                                            .named_type(t)
                                            .ok_or_else(|| err(format!("part '{}' names unknown type {t}", p.name)))?;
                                        (QName::new("", p.name.clone()), ty)
                                    }
                                    (None, None) => (QName::new("", p.name.clone()), schema::ANY_TYPE),
                                };
                                fields.push(field);
                            }
                            Input::Wrapper(schema.add_sequence(body.clone(), fields))
                        };
                        (body, input)
                    }
                    Style::Document => match body_parts.as_slice() {
                        [Part { element: Some(element), .. }] => {
                            let input = if op.encoded {
                                Input::Unchecked
                            } else {
                                Input::Element(schema.element(element).ok_or_else(|| {
                                    err(format!(
                                        "operation '{}' names element {element}, which no schema declares",
                                        op.name
                                    ))
                                })?)
                            };
                            (element.clone(), input)
                        }
                        [_] => {
                            return Err(err(format!(
                                "document operation '{}' has a body part declared by type, not element; \
                                 only document/literal with element parts is supported",
                                op.name
                            )));
                        }
                        [] => (QName::new("", ""), Input::Unchecked),
                        _ => {
                            return Err(err(format!(
                                "document operation '{}' has several body parts; WS-I allows one",
                                op.name
                            )));
                        }
                    },
                };
                operations.push(Operation {
                    name: op.name.as_str().into(),
                    binding: binding.name.clone(),
                    version: binding.version,
                    style,
                    soap_action: op.soap_action.clone(),
                    body,
                    input,
                    headers,
                });
            }
        }
        if operations.is_empty() {
            return Err(err("declares no SOAP 1.1 or SOAP 1.2 binding with operations".into()));
        }
        let mut by_body: rustc_hash::FxHashMap<Box<str>, Vec<usize>> = Default::default();
        for (i, op) in operations.iter().enumerate() {
            by_body.entry(op.body.local.as_str().into()).or_default().push(i);
        }
        Ok(Wsdl {
            target_namespace: self.target_namespace.unwrap_or_default(),
            operations,
            ports: self.ports,
            schema,
            header_elements,
            by_body,
        })
    }
}
