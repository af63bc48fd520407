//! A small element tree for WSDL and XSD files, with the namespace bindings in scope at each
//! element (QName-valued attributes such as `type="tns:ID"` need them). Start-up only: requests
//! are never parsed into a tree.

use std::path::Path;
use std::rc::Rc;

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use super::QName;
use super::wsdl::WsdlError;

/// An element of a WSDL or schema file with the namespace bindings in scope at it.
#[derive(Debug)]
pub struct Node {
    pub name: QName,
    pub attrs: Vec<(String, String)>,
    pub scope: Rc<Vec<(String, String)>>,
    pub children: Vec<Node>,
}

impl Node {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn children_named<'a>(&'a self, ns: &'a str, local: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name.ns == ns && c.name.local == local)
    }

    pub fn children_in<'a>(&'a self, ns: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name.ns == ns)
    }

    /// Resolves a QName-valued attribute (`tns:query`) with the bindings in scope here.
    pub fn resolve_qname(&self, value: &str) -> Option<QName> {
        let (prefix, local) = super::split_qname(value);
        let ns = self.scope.iter().rev().find(|(p, _)| p == prefix).map(|(_, ns)| ns.clone());
        match (ns, prefix) {
            (Some(ns), _) => Some(QName::new(ns, local)),
            (None, "") => Some(QName::new("", local)),
            (None, _) => None,
        }
    }
}

pub fn parse_tree(path: &Path, text: &str) -> Result<Node, WsdlError> {
    let err = |message: String| WsdlError { path: path.to_path_buf(), message };
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Node> = Vec::new();
    let root_scope: Rc<Vec<(String, String)>> =
        Rc::new(vec![("xml".to_owned(), "http://www.w3.org/XML/1998/namespace".to_owned())]);
    loop {
        let position = reader.buffer_position();
        let (resolved, event) =
            reader.read_resolved_event().map_err(|e| err(format!("not well-formed XML near byte {position}: {e}")))?;
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
                let parent_scope = stack.last().map(|n| n.scope.clone()).unwrap_or_else(|| root_scope.clone());
                let mut attrs = Vec::new();
                let mut declared = Vec::new();
                for attr in e.attributes() {
                    let attr = attr.map_err(|e| err(format!("bad attribute near byte {position}: {e}")))?;
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
                let node = Node { name: QName::new(ns, local), attrs, scope, children: Vec::new() };
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
                let node = stack.pop().ok_or_else(|| err("unbalanced end tag".into()))?;
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

/// Reads and parses one file.
pub fn parse_file(path: &Path) -> Result<Node, WsdlError> {
    let err = |message: String| WsdlError { path: path.to_path_buf(), message };
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| err("not UTF-8 (WSDL and XSD files must be UTF-8)".into()))?;
    parse_tree(path, &text)
}
