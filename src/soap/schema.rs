//! XSD → a compiled schema: element declarations, complex types with their content models and
//! attributes, simple types with their facets. Built once at start-up from every `xsd:schema`
//! of a WSDL and the files it imports; `validate` walks requests against it.
//!
//! Supported: `sequence`, `choice`, `all`, `group`, `any`, `minOccurs`/`maxOccurs`, `nillable`,
//! `complexContent`/`simpleContent` `extension` and `restriction`, attributes and attribute groups,
//! `anyAttribute`, simple type `restriction` (facets), `list` and `union`. SOAP-encoding arrays are
//! treated as `anyType` (their content is not checked).

use std::collections::{HashMap, HashSet};

use super::QName;
use super::simple::{Builtin, Facets, Pattern};
use super::tree::Node;

pub const XSD_NS: &str = "http://www.w3.org/2001/XMLSchema";
pub const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
pub const SOAP_ENC_NS: &str = "http://schemas.xmlsoap.org/soap/encoding/";
pub const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

pub type TypeId = usize;
pub type ElemId = usize;

/// `anyType`: any attributes, any content.
pub const ANY_TYPE: TypeId = 0;
/// `anySimpleType`: any text.
pub const ANY_SIMPLE: TypeId = 1;

/// `maxOccurs="unbounded"`.
pub const UNBOUNDED: u32 = u32::MAX;
/// Groups and types nest at most this deep while compiling; deeper is a cycle.
const MAX_NESTING: usize = 64;

#[derive(Debug, Default)]
pub struct Schema {
    pub types: Vec<Type>,
    pub elements: Vec<ElementDecl>,
    global_elements: rustc_hash::FxHashMap<QName, ElemId>,
    /// hashbrown: looked up by borrowed names (`xsi:type` values in requests) without building
    /// a `QName`.
    named_types: hashbrown::HashMap<QName, TypeId, rustc_hash::FxBuildHasher>,
    /// Per type: its text is a string without facets, so there is nothing to check in it.
    free_text: Vec<bool>,
    /// Every namespace a content model names, numbered: a request maps each namespace it
    /// declares to its number once, and child look-ups then compare numbers.
    namespaces: NamespaceIds,
}

/// Namespace names and their numbers.
#[derive(Debug, Default)]
pub struct NamespaceIds(rustc_hash::FxHashMap<Box<str>, u32>);

/// The number of a namespace no content model names.
pub const NO_NAMESPACE_ID: u32 = u32::MAX;

impl NamespaceIds {
    fn intern(&mut self, ns: &str) -> u32 {
        if let Some(id) = self.0.get(ns) {
            return *id;
        }
        let id = self.0.len() as u32;
        self.0.insert(ns.into(), id);
        id
    }
}

#[derive(Debug)]
pub struct ElementDecl {
    pub name: QName,
    pub ty: TypeId,
    pub nillable: bool,
}

#[derive(Debug)]
pub enum Type {
    Simple(SimpleType),
    Complex(ComplexType),
    /// Allocated, not yet compiled (only while compiling).
    Pending,
}

impl Type {
    /// Whether an element of this type must carry attributes (a required attribute declared).
    pub fn requires_attributes(&self) -> bool {
        matches!(self, Type::Complex(ct) if ct.attributes.iter().any(|a| a.required))
    }
}

#[derive(Debug)]
pub struct SimpleType {
    pub name: Option<QName>,
    pub base: Option<TypeId>,
    pub variety: Variety,
    pub facets: Facets,
}

#[derive(Debug, Clone)]
pub enum Variety {
    Atomic(Builtin),
    List(TypeId),
    Union(Vec<TypeId>),
}

#[derive(Debug)]
pub struct ComplexType {
    pub name: Option<QName>,
    pub base: Option<TypeId>,
    pub content: Content,
    pub attributes: Vec<AttributeDecl>,
    pub any_attribute: bool,
    /// Every element the content model names, with whether it may repeat (for paths like `x[2]`).
    pub children: Children,
    /// The wildcards of the content model.
    pub wildcards: Vec<Wildcard>,
    /// The content model as one flat sequence of distinct elements, when it is one (most
    /// SOAP types are): matched in one pass over the children instead of walking the model.
    pub flat: Option<FlatSequence>,
}

/// A sequence of distinct elements, each with its occurrence bounds. Each element's place in it
/// is kept in the type's `Children`, so matching needs no second look-up.
#[derive(Debug, Default)]
pub struct FlatSequence {
    pub items: Vec<(ElemId, u32, u32)>,
    /// For each place, the first place from there on that may not be skipped: in strict mode
    /// (`min > 0`), and in lax mode (`min > 0` and not nillable). `items.len()`: none.
    pub required: Vec<(u32, u32)>,
}

/// The place of a child that is in no flat sequence.
pub const NO_PLACE: u32 = u32::MAX;

impl FlatSequence {
    /// `p` as a flat sequence: nested sequences that occur exactly once are spliced in.
    fn of(p: &Particle, elements: &[ElementDecl]) -> Option<FlatSequence> {
        let mut flat = FlatSequence::default();
        flat.push(p)?;
        let mut seen = rustc_hash::FxHashSet::default();
        if !flat.items.iter().all(|(id, _, _)| seen.insert(*id)) {
            return None;
        }
        let n = flat.items.len() as u32;
        let mut next = (n, n);
        flat.required = vec![(n, n); flat.items.len() + 1];
        for (i, &(id, min, _)) in flat.items.iter().enumerate().rev() {
            if min > 0 {
                next.0 = i as u32;
                if !elements[id].nillable {
                    next.1 = i as u32;
                }
            }
            flat.required[i] = next;
        }
        Some(flat)
    }

    /// The first place at or after `from` that may not be skipped.
    pub fn required_from(&self, from: usize, lax: bool) -> Option<usize> {
        let (strict, lax_required) = *self.required.get(from)?;
        let at = if lax { lax_required } else { strict } as usize;
        (at < self.items.len()).then_some(at)
    }

    fn push(&mut self, p: &Particle) -> Option<()> {
        match &p.term {
            Term::Element(id) => self.items.push((*id, p.min, p.max)),
            Term::Sequence(ps) if p.min == 1 && p.max == 1 => {
                for c in ps {
                    self.push(c)?;
                }
            }
            _ => return None,
        }
        Some(())
    }
}

/// The elements a content model names, found by name without allocating. Each name has one
/// canonical declaration (XSD requires same-named elements of one model to agree), and the
/// model's particles refer to it, so matching compares ids only.
#[derive(Debug, Default)]
pub struct Children {
    // Looked up once per request element: FxHash, as the keys are the schema's own names.
    // Nearly every local name has one declaration: kept inline, not behind a second pointer.
    // hashbrown for look-ups by a borrowed name compared in place (see `Local`).
    by_local: hashbrown::HashMap<Box<str>, smallvec::SmallVec<[SameLocal; 1]>, rustc_hash::FxBuildHasher>,
    /// The flat sequence's items by place, found from a name's key (`name_key`) in a small
    /// table of its own, for a fraction of the cost of hashing the name (`None`: no flat
    /// sequence, or a name in it twice).
    in_order: Option<InOrder>,
}

/// The flat sequence's items' name keys (`name_key`) and beside them what `Children::get`
/// answers for each; `slots`, an open-addressed table from a key to its place.
///
/// (A forward walk over the keys from the place reached did the same with no table; a type's
/// many optional fields made it a loop of unpredictable length per element.)
#[derive(Debug)]
struct InOrder {
    keys: Box<[u64]>,
    items: Box<[Placed]>,
    /// Places (`EMPTY_SLOT`: none), at `slot_of(key, shift)` or the first free slot after it
    /// (wrapping); at most half full, so a look-up ends within a few slots.
    slots: Box<[u32]>,
    shift: u32,
}

const EMPTY_SLOT: u32 = u32::MAX;

impl InOrder {
    fn new(keys: Vec<u64>, items: Vec<Placed>) -> InOrder {
        let size = (keys.len() * 2).next_power_of_two().max(2);
        let shift = 64 - size.trailing_zeros();
        let mut slots = vec![EMPTY_SLOT; size];
        for (place, &key) in keys.iter().enumerate() {
            let mut i = slot_of(key, shift);
            while slots[i] != EMPTY_SLOT {
                i = (i + 1) & (size - 1);
            }
            slots[i] = place as u32;
        }
        InOrder { keys: keys.into(), items: items.into(), slots: slots.into(), shift }
    }
}

/// A key's first slot in a table of `1 << (64 - shift)` slots (Fibonacci hashing: the
/// multiplication mixes the name's bytes into the top bits).
#[inline]
fn slot_of(key: u64, shift: u32) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize
}

#[derive(Debug)]
pub struct Placed {
    ns: u32,
    /// The local name's bytes after the eighth (the key holds the first eight and the length).
    tail: Box<[u8]>,
    pub id: ElemId,
    pub repeatable: bool,
    /// Known once every type is (`Compiler::finish`): the element's declared type, whether its
    /// text is free (`Schema::free_text`) and whether it must have attributes. Kept here so
    /// that matching the usual element reads nothing more of the schema.
    pub ty: TypeId,
    pub free_text: bool,
    pub required_attributes: bool,
}

/// A name's first eight bytes with its length folded in: equal names have equal keys; different
/// names with equal keys differ in their tails (or lengths) past the eighth byte.
#[inline]
fn name_key(local: &str) -> u64 {
    let bytes = local.as_bytes();
    // The first eight bytes as a little-endian number (zero-padded), read without a loop over a
    // short name's bytes: two overlapping reads put each byte at its own place.
    let n = bytes.len();
    let head = if let Some(head) = bytes.first_chunk::<8>() {
        u64::from_le_bytes(*head)
    } else if let (Some(first), Some(last)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
        u64::from(u32::from_le_bytes(*first)) | (u64::from(u32::from_le_bytes(*last)) << (8 * (n - 4)))
    } else if let (Some(&a), Some(&b), Some(&c)) = (bytes.first(), bytes.get(n / 2), bytes.last()) {
        u64::from(a) | (u64::from(b) << (8 * (n / 2))) | (u64::from(c) << (8 * (n - 1)))
    } else {
        0
    };
    head ^ ((bytes.len() as u64) << 56)
}

/// A request's element name, looked up among a type's children: hashed as the stored name is,
/// compared byte by byte in place (names are short; `==` on `str` calls `memcmp`).
struct Local<'a>(&'a str);

impl std::hash::Hash for Local<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl hashbrown::Equivalent<Box<str>> for Local<'_> {
    fn equivalent(&self, key: &Box<str>) -> bool {
        self.0.len() == key.len() && self.0.bytes().zip(key.bytes()).all(|(a, b)| a == b)
    }
}

/// One child declaration among those sharing a local name: namespace number, id, may repeat,
/// place in the type's flat sequence (`NO_PLACE`: none).
type SameLocal = (u32, ElemId, bool, u32);

impl Children {
    /// The declaration of child `{ns}local`, whether it may repeat, and its place in the type's
    /// flat sequence.
    pub fn get(&self, ns: u32, local: &str) -> Option<(ElemId, bool, u32)> {
        self.by_local.get(&Local(local))?.iter().find(|(n, ..)| *n == ns).map(|(_, id, rep, place)| (*id, *rep, *place))
    }

    /// As `get`, for a child expected at or after place `from` of the flat sequence: the
    /// in-order table first, then the look-up by name.
    #[inline]
    pub fn get_from(&self, from: u32, ns: u32, local: &str) -> Option<(ElemId, bool, u32)> {
        match self.next_in_order(from, ns, local) {
            Some((place, item)) => Some((item.id, item.repeatable, place)),
            None => self.get(ns, local),
        }
    }

    /// Child `{ns}local` at or after place `from` of the flat sequence: its place and what is
    /// known of it.
    #[inline]
    pub fn next_in_order(&self, from: u32, ns: u32, local: &str) -> Option<(u32, &Placed)> {
        let order = self.in_order.as_ref()?;
        let key = name_key(local);
        let tail = local.as_bytes().get(8..).unwrap_or_default();
        let mask = order.slots.len() - 1;
        let mut i = slot_of(key, order.shift);
        loop {
            let place = *order.slots.get(i)?;
            let (Some(&k), Some(item)) = (order.keys.get(place as usize), order.items.get(place as usize)) else {
                return None;
            };
            if k == key
                && item.ns == ns
                && item.tail.len() == tail.len()
                && item.tail.iter().zip(tail).all(|(a, b)| a == b)
            {
                return (place >= from).then_some((place, item));
            }
            i = (i + 1) & mask;
        }
    }

    /// Records a child; returns the canonical id for its name.
    fn insert(&mut self, name: &QName, id: ElemId, repeatable: bool, namespaces: &mut NamespaceIds) -> ElemId {
        let ns = namespaces.intern(&name.ns);
        let same = self.by_local.entry(name.local.as_str().into()).or_default();
        match same.iter_mut().find(|(n, ..)| *n == ns) {
            Some((_, canonical, rep, _)) => {
                *rep |= repeatable;
                *canonical
            }
            None => {
                same.push((ns, id, repeatable, NO_PLACE));
                id
            }
        }
    }

    /// Notes each child's place in the flat sequence.
    fn place(&mut self, flat: &FlatSequence) {
        let mut in_order: Vec<Option<(u64, Placed)>> = flat.items.iter().map(|_| None).collect();
        let mut unique = true;
        for (local, same) in self.by_local.iter_mut() {
            for &mut (ns, id, repeatable, ref mut place) in same.iter_mut() {
                let mut at = flat.items.iter().enumerate().filter(|(_, (item, _, _))| *item == id).map(|(i, _)| i);
                if let Some(i) = at.next() {
                    *place = i as u32;
                    unique &= at.next().is_none();
                    let tail = local.as_bytes().get(8..).unwrap_or_default().into();
                    let placed =
                        Placed { ns, tail, id, repeatable, ty: 0, free_text: false, required_attributes: true };
                    in_order[i] = Some((name_key(local), placed));
                }
            }
        }
        // Every item named once: the table then finds exactly what the look-up finds.
        self.in_order = in_order.into_iter().collect::<Option<Vec<_>>>().filter(|_| unique).map(|all| {
            let (keys, items): (Vec<u64>, Vec<Placed>) = all.into_iter().unzip();
            InOrder::new(keys, items)
        });
    }
}

#[derive(Debug, Clone)]
pub enum Content {
    Empty,
    /// Text of a simple type (simple content, or mixed-free text).
    Text(TypeId),
    Elements {
        particle: Particle,
        mixed: bool,
    },
    /// `anyType`: anything goes.
    Any,
}

#[derive(Debug, Clone)]
pub struct Particle {
    pub min: u32,
    pub max: u32,
    pub term: Term,
}

#[derive(Debug, Clone)]
pub enum Term {
    Element(ElemId),
    Sequence(Vec<Particle>),
    Choice(Vec<Particle>),
    All(Vec<Particle>),
    Any(Wildcard),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wildcard {
    pub namespaces: Namespaces,
    pub process: Process,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespaces {
    Any,
    /// Any namespace but this one (and not unqualified).
    Other(String),
    /// Exactly these ("" for unqualified).
    List(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    Strict,
    Lax,
    Skip,
}

#[derive(Debug, Clone)]
pub struct AttributeDecl {
    pub name: QName,
    pub ty: TypeId,
    pub required: bool,
}

impl Wildcard {
    pub fn allows(&self, ns: &str) -> bool {
        match &self.namespaces {
            Namespaces::Any => true,
            Namespaces::Other(tns) => !ns.is_empty() && ns != tns,
            Namespaces::List(list) => list.iter().any(|n| n == ns),
        }
    }
}

impl Schema {
    pub fn element(&self, name: &QName) -> Option<ElemId> {
        self.global_elements.get(name).copied()
    }

    /// The number of a namespace (`NO_NAMESPACE_ID` when no content model names it).
    pub fn namespace_id(&self, ns: &str) -> u32 {
        self.namespaces.0.get(ns).copied().unwrap_or(NO_NAMESPACE_ID)
    }

    /// Whether an element of this type holds text that needs no check (a string without facets).
    pub fn free_text(&self, ty: TypeId) -> bool {
        self.free_text.get(ty).copied().unwrap_or(false)
    }

    pub fn named_type(&self, name: &QName) -> Option<TypeId> {
        self.named_type_in(&name.ns, &name.local)
    }

    /// As `named_type`, for a name given as its parts.
    pub fn named_type_in(&self, ns: &str, local: &str) -> Option<TypeId> {
        self.named_types.get(&NameRef(ns, local)).copied().or_else(|| builtin_id(ns, local))
    }

    /// Whether `ty` is `base` or derived from it (for `xsi:type`).
    pub fn derives_from(&self, mut ty: TypeId, base: TypeId) -> bool {
        if base == ANY_TYPE {
            return true;
        }
        for _ in 0..MAX_NESTING {
            if ty == base {
                return true;
            }
            let next = match &self.types[ty] {
                Type::Complex(c) => c.base,
                Type::Simple(s) => s.base,
                Type::Pending => None,
            };
            match next {
                Some(n) => ty = n,
                None => return false,
            }
        }
        false
    }

    /// A type's name for messages.
    pub fn type_name(&self, ty: TypeId) -> String {
        let name = match &self.types[ty] {
            Type::Complex(c) => c.name.as_ref(),
            Type::Simple(s) => s.name.as_ref(),
            Type::Pending => None,
        };
        name.map(|n| n.local.clone()).unwrap_or_else(|| "(anonymous type)".to_owned())
    }

    /// Checks text against a simple type; the error names the broken rule.
    pub fn check_simple(&self, ty: TypeId, value: &str) -> Result<(), String> {
        let Type::Simple(st) = &self.types[ty] else { return Ok(()) };
        match &st.variety {
            Variety::Atomic(b) => {
                b.check(value)?;
                if st.facets.is_empty() { Ok(()) } else { st.facets.check(*b, value) }
            }
            Variety::List(item) => {
                let mut n = 0;
                for v in value.split_whitespace() {
                    self.check_simple(*item, v)?;
                    n += 1;
                }
                if let Some(len) = st.facets.length.filter(|l| *l != n) {
                    return Err(format!("list has {n} items, not {len}"));
                }
                if let Some(max) = st.facets.max_length.filter(|m| n > *m) {
                    return Err(format!("list has {n} items, more than maxLength {max}"));
                }
                Ok(())
            }
            Variety::Union(members) => {
                if members.iter().any(|m| self.check_simple(*m, value).is_ok()) {
                    st.facets.check(Builtin::String, value)
                } else {
                    Err(format!("'{value}' matches none of the member types of {}", self.type_name(ty)))
                }
            }
        }
    }
}

impl Schema {
    /// Adds a complex type whose content is a sequence of these elements, each exactly once (an
    /// rpc-style operation's wrapper, whose children are the message parts).
    pub fn add_sequence(&mut self, name: QName, fields: Vec<(QName, TypeId)>) -> TypeId {
        let mut particles = Vec::new();
        let mut children = Children::default();
        for (field, ty) in fields {
            let id = self.elements.len();
            children.insert(&field, id, false, &mut self.namespaces);
            self.elements.push(ElementDecl { name: field, ty, nillable: true });
            particles.push(Particle { min: 1, max: 1, term: Term::Element(id) });
        }
        self.types.push(Type::Complex(ComplexType {
            name: Some(name),
            base: None,
            content: Content::Elements {
                particle: Particle { min: 1, max: 1, term: Term::Sequence(particles) },
                mixed: false,
            },
            attributes: Vec::new(),
            any_attribute: true,
            children,
            wildcards: Vec::new(),
            flat: None,
        }));
        self.types.len() - 1
    }
}

/// The id of a built-in type named `name`: pre-allocated in `BUILTIN_NAMES` order from `ANY_SIMPLE` on.
/// A qualified name as borrowed parts, hashed and compared as the `QName` it equals.
struct NameRef<'a>(&'a str, &'a str);

impl std::hash::Hash for NameRef<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As `QName`'s derived hash: its fields in order.
        self.0.hash(state);
        self.1.hash(state);
    }
}

impl hashbrown::Equivalent<QName> for NameRef<'_> {
    fn equivalent(&self, key: &QName) -> bool {
        key.ns == self.0 && key.local == self.1
    }
}

fn builtin_id(ns: &str, local: &str) -> Option<TypeId> {
    if ns != XSD_NS && ns != SOAP_ENC_NS {
        return None;
    }
    match local {
        "anyType" => Some(ANY_TYPE),
        // SOAP-encoding's compound types: their encoded content is not checked.
        "Array" | "Struct" if ns == SOAP_ENC_NS => Some(ANY_TYPE),
        local => BUILTIN_NAMES.iter().position(|n| *n == local).map(|i| i + ANY_SIMPLE),
    }
}

const BUILTIN_NAMES: &[&str] = &[
    "anySimpleType",
    "string",
    "normalizedString",
    "token",
    "anyURI",
    "language",
    "NOTATION",
    "ENTITY",
    "ENTITIES",
    "IDREFS",
    "NMTOKENS",
    "boolean",
    "integer",
    "long",
    "int",
    "short",
    "byte",
    "nonNegativeInteger",
    "positiveInteger",
    "nonPositiveInteger",
    "negativeInteger",
    "unsignedLong",
    "unsignedInt",
    "unsignedShort",
    "unsignedByte",
    "decimal",
    "double",
    "float",
    "date",
    "dateTime",
    "time",
    "duration",
    "base64Binary",
    "hexBinary",
    "QName",
    "NCName",
    "Name",
    "ID",
    "IDREF",
    "NMTOKEN",
    "gYear",
    "gYearMonth",
    "gMonthDay",
    "gDay",
    "gMonth",
];

/// One `xsd:schema` element and where it came from.
pub struct SchemaDoc {
    pub node: Node,
    pub file: std::path::PathBuf,
}

impl SchemaDoc {
    fn tns(&self) -> &str {
        self.node.attr("targetNamespace").unwrap_or_default()
    }
}

/// Compiles every schema of a WSDL into one `Schema`.
pub fn compile(docs: &[SchemaDoc]) -> Result<Schema, String> {
    let mut c = Compiler::new(docs);
    c.index()?;
    let types: Vec<(QName, usize, &Node)> = c.type_nodes.iter().map(|(q, (d, n))| (q.clone(), *d, *n)).collect();
    for (name, doc, node) in types {
        let id = c.named_type_id(&name)?;
        c.ensure_type(id, &name, doc, node, 0)?;
    }
    let elements: Vec<(QName, usize, &Node)> = c.element_nodes.iter().map(|(q, (d, n))| (q.clone(), *d, *n)).collect();
    for (name, doc, node) in elements {
        c.global_element(&name, doc, node)?;
    }
    c.finish()
}

struct Compiler<'a> {
    docs: &'a [SchemaDoc],
    type_nodes: HashMap<QName, (usize, &'a Node)>,
    element_nodes: HashMap<QName, (usize, &'a Node)>,
    group_nodes: HashMap<QName, (usize, &'a Node)>,
    attribute_group_nodes: HashMap<QName, (usize, &'a Node)>,
    attribute_nodes: HashMap<QName, (usize, &'a Node)>,
    schema: Schema,
    in_progress: HashSet<TypeId>,
}

fn is_xsd(node: &Node, local: &str) -> bool {
    node.name.ns == XSD_NS && node.name.local == local
}

fn occurs(node: &Node) -> Result<(u32, u32), String> {
    let parse = |attr: &str, default: u32| -> Result<u32, String> {
        match node.attr(attr) {
            None => Ok(default),
            Some("unbounded") if attr == "maxOccurs" => Ok(UNBOUNDED),
            Some(v) => v.trim().parse().map_err(|_| format!("{attr}=\"{v}\" is not a number")),
        }
    };
    Ok((parse("minOccurs", 1)?, parse("maxOccurs", 1)?))
}

impl<'a> Compiler<'a> {
    fn new(docs: &'a [SchemaDoc]) -> Self {
        let mut schema = Schema::default();
        schema.types.push(Type::Complex(ComplexType {
            name: Some(QName::new(XSD_NS, "anyType")),
            base: None,
            content: Content::Any,
            attributes: Vec::new(),
            any_attribute: true,
            children: Children::default(),
            wildcards: Vec::new(),
            flat: None,
        }));
        for name in BUILTIN_NAMES {
            let builtin = Builtin::by_name(name).unwrap_or(Builtin::String);
            schema.types.push(Type::Simple(SimpleType {
                name: Some(QName::new(XSD_NS, *name)),
                base: Some(ANY_SIMPLE).filter(|_| *name != "anySimpleType"),
                variety: Variety::Atomic(builtin),
                facets: Facets::default(),
            }));
        }
        Compiler {
            docs,
            type_nodes: HashMap::new(),
            element_nodes: HashMap::new(),
            group_nodes: HashMap::new(),
            attribute_group_nodes: HashMap::new(),
            attribute_nodes: HashMap::new(),
            schema,
            in_progress: HashSet::new(),
        }
    }

    fn index(&mut self) -> Result<(), String> {
        for (i, doc) in self.docs.iter().enumerate() {
            let tns = doc.tns();
            for child in &doc.node.children {
                if child.name.ns != XSD_NS {
                    continue;
                }
                let Some(name) = child.attr("name") else { continue };
                let qname = QName::new(tns, name);
                let map = match child.name.local.as_str() {
                    "complexType" | "simpleType" => &mut self.type_nodes,
                    "element" => &mut self.element_nodes,
                    "group" => &mut self.group_nodes,
                    "attributeGroup" => &mut self.attribute_group_nodes,
                    "attribute" => &mut self.attribute_nodes,
                    _ => continue,
                };
                map.entry(qname).or_insert((i, child));
            }
        }
        Ok(())
    }

    fn resolve(&self, node: &Node, value: &str, what: &str) -> Result<QName, String> {
        node.resolve_qname(value).ok_or_else(|| format!("{what} '{value}' uses an undeclared namespace prefix"))
    }

    /// The id of a named type, allocating it on first reference.
    fn named_type_id(&mut self, name: &QName) -> Result<TypeId, String> {
        if let Some(id) = self.schema.named_type(name) {
            return Ok(id);
        }
        if !self.type_nodes.contains_key(name) {
            return Err(format!("type {name} is not defined in any schema of this WSDL"));
        }
        let id = self.schema.types.len();
        self.schema.types.push(Type::Pending);
        self.schema.named_types.insert(name.clone(), id);
        Ok(id)
    }

    /// A named type, compiled now if it is not yet (an extension needs its base's content).
    fn type_ref(&mut self, name: &QName, depth: usize) -> Result<TypeId, String> {
        let id = self.named_type_id(name)?;
        if matches!(self.schema.types[id], Type::Pending) {
            let (doc, node) = self.type_nodes[name];
            self.ensure_type(id, name, doc, node, depth + 1)?;
        }
        Ok(id)
    }

    fn ensure_type(
        &mut self,
        id: TypeId,
        name: &QName,
        doc: usize,
        node: &'a Node,
        depth: usize,
    ) -> Result<(), String> {
        if !matches!(self.schema.types[id], Type::Pending) {
            return Ok(());
        }
        if depth > MAX_NESTING || !self.in_progress.insert(id) {
            return Err(format!("type {name} derives from itself"));
        }
        let ty = if is_xsd(node, "simpleType") {
            Type::Simple(self.simple_type(node, Some(name.clone()), depth)?)
        } else {
            Type::Complex(self.complex_type(node, doc, Some(name.clone()), depth)?)
        };
        self.schema.types[id] = ty;
        self.in_progress.remove(&id);
        Ok(())
    }

    fn push(&mut self, ty: Type) -> TypeId {
        self.schema.types.push(ty);
        self.schema.types.len() - 1
    }

    fn global_element(&mut self, name: &QName, doc: usize, node: &'a Node) -> Result<ElemId, String> {
        if let Some(id) = self.schema.global_elements.get(name) {
            return Ok(*id);
        }
        let id = self.schema.elements.len();
        // Registered before its type is compiled: a type may contain its own element.
        self.schema.elements.push(ElementDecl { name: name.clone(), ty: ANY_TYPE, nillable: false });
        self.schema.global_elements.insert(name.clone(), id);
        let (ty, nillable) = self.element_type(node, doc, 0).map_err(|e| format!("element {name}: {e}"))?;
        self.schema.elements[id] = ElementDecl { name: name.clone(), ty, nillable };
        Ok(id)
    }

    fn element_type(&mut self, node: &'a Node, doc: usize, depth: usize) -> Result<(TypeId, bool), String> {
        let nillable = matches!(node.attr("nillable"), Some("true" | "1"));
        let ty = if let Some(t) = node.attr("type") {
            // Only the id: the type may contain this element (recursive structures).
            let q = self.resolve(node, t, "type")?;
            self.named_type_id(&q)?
        } else if let Some(inline) = node.children.iter().find(|c| is_xsd(c, "complexType")) {
            let ct = self.complex_type(inline, doc, None, depth + 1)?;
            self.push(Type::Complex(ct))
        } else if let Some(inline) = node.children.iter().find(|c| is_xsd(c, "simpleType")) {
            let st = self.simple_type(inline, None, depth + 1)?;
            self.push(Type::Simple(st))
        } else {
            ANY_TYPE
        };
        Ok((ty, nillable))
    }

    fn local_element(&mut self, node: &'a Node, doc: usize, depth: usize) -> Result<ElemId, String> {
        if let Some(r) = node.attr("ref") {
            let q = self.resolve(node, r, "element ref")?;
            let (d, n) =
                *self.element_nodes.get(&q).ok_or_else(|| format!("element {q} is referenced but not defined"))?;
            return self.global_element(&q, d, n);
        }
        let name = node.attr("name").ok_or("local element without name or ref")?;
        let qualified = match node.attr("form") {
            Some(form) => form == "qualified",
            None => self.docs[doc].node.attr("elementFormDefault") == Some("qualified"),
        };
        let ns = if qualified { self.docs[doc].tns() } else { "" };
        let qname = QName::new(ns, name);
        let (ty, nillable) = self.element_type(node, doc, depth).map_err(|e| format!("element '{name}': {e}"))?;
        self.schema.elements.push(ElementDecl { name: qname, ty, nillable });
        Ok(self.schema.elements.len() - 1)
    }

    /// The particle a content-model node stands for (`None` for annotations and the like).
    fn particle(&mut self, node: &'a Node, doc: usize, depth: usize) -> Result<Option<Particle>, String> {
        if node.name.ns != XSD_NS {
            return Ok(None);
        }
        if depth > MAX_NESTING {
            return Err("content model nests too deep (a group that contains itself?)".into());
        }
        let (min, max) = occurs(node)?;
        let term = match node.name.local.as_str() {
            "element" => Term::Element(self.local_element(node, doc, depth)?),
            "sequence" | "choice" | "all" => {
                let mut parts = Vec::new();
                for child in &node.children {
                    if let Some(p) = self.particle(child, doc, depth + 1)? {
                        parts.push(p);
                    }
                }
                match node.name.local.as_str() {
                    "sequence" => Term::Sequence(parts),
                    "choice" => Term::Choice(parts),
                    _ => Term::All(parts),
                }
            }
            "group" => {
                let r = node.attr("ref").ok_or("group without ref inside a content model")?;
                let q = self.resolve(node, r, "group ref")?;
                let (d, group) = *self.group_nodes.get(&q).ok_or_else(|| format!("group {q} is not defined"))?;
                let inner =
                    group.children.iter().find(|c| is_xsd(c, "sequence") || is_xsd(c, "choice") || is_xsd(c, "all"));
                match inner {
                    Some(inner) => match self.particle(inner, d, depth + 1)? {
                        Some(p) => Term::Sequence(vec![p]),
                        None => return Ok(None),
                    },
                    None => return Ok(None),
                }
            }
            "any" => Term::Any(self.wildcard(node, doc)),
            _ => return Ok(None),
        };
        Ok(Some(Particle { min, max, term }))
    }

    fn wildcard(&self, node: &Node, doc: usize) -> Wildcard {
        let tns = self.docs[doc].tns().to_owned();
        let namespaces = match node.attr("namespace").unwrap_or("##any").trim() {
            "##any" => Namespaces::Any,
            "##other" => Namespaces::Other(tns),
            list => Namespaces::List(
                list.split_whitespace()
                    .map(|n| match n {
                        "##targetNamespace" => tns.clone(),
                        "##local" => String::new(),
                        other => other.to_owned(),
                    })
                    .collect(),
            ),
        };
        let process = match node.attr("processContents") {
            Some("lax") => Process::Lax,
            Some("skip") => Process::Skip,
            _ => Process::Strict,
        };
        Wildcard { namespaces, process }
    }

    fn complex_type(
        &mut self,
        node: &'a Node,
        doc: usize,
        name: Option<QName>,
        depth: usize,
    ) -> Result<ComplexType, String> {
        let label = name.as_ref().map(|n| n.local.clone()).unwrap_or_else(|| "anonymous complexType".into());
        let wrap = |e: String| format!("{label}: {e}");
        let mixed = matches!(node.attr("mixed"), Some("true" | "1"));
        let mut ct = ComplexType {
            name,
            base: None,
            content: Content::Empty,
            attributes: Vec::new(),
            any_attribute: false,
            children: Children::default(),
            wildcards: Vec::new(),
            flat: None,
        };
        for child in &node.children {
            if child.name.ns != XSD_NS {
                continue;
            }
            match child.name.local.as_str() {
                "sequence" | "choice" | "all" | "group" => {
                    if let Some(p) = self.particle(child, doc, depth + 1).map_err(wrap)? {
                        ct.content = Content::Elements { particle: p, mixed };
                    }
                }
                "complexContent" => self.complex_content(&mut ct, child, doc, depth, mixed).map_err(wrap)?,
                "simpleContent" => self.simple_content(&mut ct, child, doc, depth).map_err(wrap)?,
                _ => self.attribute_item(&mut ct, child, doc).map_err(wrap)?,
            }
        }
        if mixed && matches!(ct.content, Content::Empty) {
            ct.content = Content::Text(ANY_SIMPLE);
        }
        Ok(ct)
    }

    fn complex_content(
        &mut self,
        ct: &mut ComplexType,
        node: &'a Node,
        doc: usize,
        depth: usize,
        mixed: bool,
    ) -> Result<(), String> {
        let Some(derivation) = node.children.iter().find(|c| is_xsd(c, "extension") || is_xsd(c, "restriction")) else {
            return Ok(());
        };
        let base_name = derivation.attr("base").ok_or("complexContent derivation without base")?;
        let base_q = self.resolve(derivation, base_name, "base")?;
        let base = self.type_ref(&base_q, depth)?;
        ct.base = Some(base);
        let (base_content, base_attrs, base_any_attr) = match &self.schema.types[base] {
            Type::Complex(b) => (b.content.clone(), b.attributes.clone(), b.any_attribute),
            _ => (Content::Empty, Vec::new(), false),
        };
        let mut own = None;
        for child in &derivation.children {
            if let Some(p) = self.particle(child, doc, depth + 1)? {
                own = Some(p);
            }
        }
        let extension = is_xsd(derivation, "extension");
        if base == ANY_TYPE && !extension && own.is_none() {
            ct.content = Content::Empty;
        } else if extension {
            ct.attributes = base_attrs;
            ct.any_attribute = base_any_attr;
            ct.content = match (base_content, own) {
                (Content::Elements { particle, mixed: m }, Some(own)) => Content::Elements {
                    particle: Particle { min: 1, max: 1, term: Term::Sequence(vec![particle, own]) },
                    mixed: m || mixed,
                },
                (Content::Empty, Some(own)) => Content::Elements { particle: own, mixed },
                (base, None) => base,
                (Content::Any, Some(_)) => Content::Any,
                (Content::Text(_), Some(own)) => Content::Elements { particle: own, mixed: true },
            };
        } else {
            // A restriction restates the content it keeps; SOAP-encoded arrays restrict soapenc:Array.
            ct.attributes = base_attrs;
            ct.any_attribute = base_any_attr;
            ct.content = match own {
                Some(p) => Content::Elements { particle: p, mixed },
                None if base == ANY_TYPE => Content::Any,
                None => Content::Empty,
            };
        }
        for child in &derivation.children {
            self.attribute_item(ct, child, doc)?;
        }
        Ok(())
    }

    fn simple_content(&mut self, ct: &mut ComplexType, node: &'a Node, doc: usize, depth: usize) -> Result<(), String> {
        let Some(derivation) = node.children.iter().find(|c| is_xsd(c, "extension") || is_xsd(c, "restriction")) else {
            return Ok(());
        };
        let base_name = derivation.attr("base").ok_or("simpleContent derivation without base")?;
        let base_q = self.resolve(derivation, base_name, "base")?;
        let base = self.type_ref(&base_q, depth)?;
        ct.base = Some(base);
        let text = match &self.schema.types[base] {
            Type::Simple(_) => base,
            Type::Complex(b) => {
                ct.attributes = b.attributes.clone();
                ct.any_attribute = b.any_attribute;
                match b.content {
                    Content::Text(t) => t,
                    _ => ANY_SIMPLE,
                }
            }
            Type::Pending => ANY_SIMPLE,
        };
        let text = if is_xsd(derivation, "restriction")
            && derivation.children.iter().any(|c| c.name.ns == XSD_NS && is_facet(&c.name.local))
        {
            let facets = self.restricted(text, derivation, None)?;
            self.push(Type::Simple(facets))
        } else {
            text
        };
        ct.content = Content::Text(text);
        for child in &derivation.children {
            self.attribute_item(ct, child, doc)?;
        }
        Ok(())
    }

    /// `attribute`, `attributeGroup` or `anyAttribute` (other nodes are ignored).
    fn attribute_item(&mut self, ct: &mut ComplexType, node: &'a Node, doc: usize) -> Result<(), String> {
        if node.name.ns != XSD_NS {
            return Ok(());
        }
        match node.name.local.as_str() {
            "anyAttribute" => ct.any_attribute = true,
            "attribute" => {
                if let Some(decl) = self.attribute(node, doc)? {
                    ct.attributes.retain(|a| a.name != decl.name);
                    ct.attributes.push(decl);
                } else if let Some(name) = node.attr("name") {
                    // use="prohibited" in a restriction removes an inherited attribute.
                    ct.attributes.retain(|a| a.name.local != name);
                }
            }
            "attributeGroup" => {
                let r = node.attr("ref").ok_or("attributeGroup without ref")?;
                let q = self.resolve(node, r, "attributeGroup ref")?;
                let (d, group) =
                    *self.attribute_group_nodes.get(&q).ok_or_else(|| format!("attributeGroup {q} is not defined"))?;
                for child in &group.children {
                    if is_xsd(child, "attributeGroup") && child.attr("ref") == Some(r) {
                        return Err(format!("attributeGroup {q} contains itself"));
                    }
                    self.attribute_item(ct, child, d)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn attribute(&mut self, node: &'a Node, doc: usize) -> Result<Option<AttributeDecl>, String> {
        let required = match node.attr("use") {
            Some("prohibited") => return Ok(None),
            Some("required") => true,
            _ => false,
        };
        if let Some(r) = node.attr("ref") {
            let q = self.resolve(node, r, "attribute ref")?;
            let ty = match self.attribute_nodes.get(&q).copied() {
                Some((d, n)) => self.attribute(n, d)?.map(|a| a.ty).unwrap_or(ANY_SIMPLE),
                // xml:lang and friends, and attributes of schemas we do not have: any text.
                None => ANY_SIMPLE,
            };
            return Ok(Some(AttributeDecl { name: q, ty, required }));
        }
        let Some(name) = node.attr("name") else { return Ok(None) };
        let qualified = match node.attr("form") {
            Some(form) => form == "qualified",
            None => self.docs[doc].node.attr("attributeFormDefault") == Some("qualified"),
        };
        let ns = if qualified { self.docs[doc].tns() } else { "" };
        let ty = if let Some(t) = node.attr("type") {
            let q = self.resolve(node, t, "type")?;
            self.named_type_id(&q)?
        } else if let Some(inline) = node.children.iter().find(|c| is_xsd(c, "simpleType")) {
            let st = self.simple_type(inline, None, 1)?;
            self.push(Type::Simple(st))
        } else {
            ANY_SIMPLE
        };
        Ok(Some(AttributeDecl { name: QName::new(ns, name), ty, required }))
    }

    fn simple_type(&mut self, node: &'a Node, name: Option<QName>, depth: usize) -> Result<SimpleType, String> {
        let label = name.as_ref().map(|n| n.local.clone()).unwrap_or_else(|| "anonymous simpleType".into());
        for child in &node.children {
            if child.name.ns != XSD_NS {
                continue;
            }
            match child.name.local.as_str() {
                "restriction" => {
                    let base = match child.attr("base") {
                        Some(b) => {
                            let q = self.resolve(child, b, "base").map_err(|e| format!("{label}: {e}"))?;
                            self.type_ref(&q, depth).map_err(|e| format!("{label}: {e}"))?
                        }
                        None => match child.children.iter().find(|c| is_xsd(c, "simpleType")) {
                            Some(inline) => {
                                let st = self.simple_type(inline, None, depth + 1)?;
                                self.push(Type::Simple(st))
                            }
                            None => ANY_SIMPLE,
                        },
                    };
                    return self.restricted(base, child, name).map_err(|e| format!("{label}: {e}"));
                }
                "list" => {
                    let item = match child.attr("itemType") {
                        Some(t) => {
                            let q = self.resolve(child, t, "itemType")?;
                            self.named_type_id(&q)?
                        }
                        None => match child.children.iter().find(|c| is_xsd(c, "simpleType")) {
                            Some(inline) => {
                                let st = self.simple_type(inline, None, depth + 1)?;
                                self.push(Type::Simple(st))
                            }
                            None => ANY_SIMPLE,
                        },
                    };
                    return Ok(SimpleType {
                        name,
                        base: Some(ANY_SIMPLE),
                        variety: Variety::List(item),
                        facets: Facets::default(),
                    });
                }
                "union" => {
                    let mut members = Vec::new();
                    for t in child.attr("memberTypes").unwrap_or_default().split_whitespace() {
                        let q = self.resolve(child, t, "memberTypes")?;
                        members.push(self.named_type_id(&q)?);
                    }
                    for inline in child.children.iter().filter(|c| is_xsd(c, "simpleType")) {
                        let st = self.simple_type(inline, None, depth + 1)?;
                        members.push(self.push(Type::Simple(st)));
                    }
                    return Ok(SimpleType {
                        name,
                        base: Some(ANY_SIMPLE),
                        variety: Variety::Union(members),
                        facets: Facets::default(),
                    });
                }
                _ => {}
            }
        }
        Ok(SimpleType {
            name,
            base: Some(ANY_SIMPLE),
            variety: Variety::Atomic(Builtin::String),
            facets: Facets::default(),
        })
    }

    /// `base` narrowed by the facets under `restriction`.
    fn restricted(&mut self, base: TypeId, restriction: &Node, name: Option<QName>) -> Result<SimpleType, String> {
        let (variety, mut facets) = match &self.schema.types[base] {
            Type::Simple(b) => (b.variety.clone(), b.facets.clone()),
            _ => (Variety::Atomic(Builtin::String), Facets::default()),
        };
        let mut enumeration = Vec::new();
        let mut patterns = Vec::new();
        for f in &restriction.children {
            if f.name.ns != XSD_NS {
                continue;
            }
            let value = f.attr("value").unwrap_or_default();
            let number = || {
                value.trim().parse::<usize>().map_err(|_| format!("{} value '{value}' is not a number", f.name.local))
            };
            let bound =
                || value.trim().parse::<f64>().map_err(|_| format!("{} value '{value}' is not a number", f.name.local));
            match f.name.local.as_str() {
                "enumeration" => enumeration.push(value.to_owned()),
                "pattern" => patterns.push(Pattern::compile(value)?),
                "length" => facets.length = Some(number()?),
                "minLength" => facets.min_length = Some(number()?),
                "maxLength" => facets.max_length = Some(number()?),
                "totalDigits" => facets.total_digits = Some(number()?),
                "fractionDigits" => facets.fraction_digits = Some(number()?),
                "minInclusive" => facets.min_inclusive = Some(bound()?),
                "maxInclusive" => facets.max_inclusive = Some(bound()?),
                "minExclusive" => facets.min_exclusive = Some(bound()?),
                "maxExclusive" => facets.max_exclusive = Some(bound()?),
                _ => {}
            }
        }
        if !enumeration.is_empty() {
            facets.enumeration = Some(enumeration);
        }
        if !patterns.is_empty() {
            facets.patterns.push(patterns);
        }
        Ok(SimpleType { name, base: Some(base), variety, facets })
    }

    /// Fills each complex type's child index and wildcard list, and points its particles at the
    /// canonical declaration of each name.
    fn finish(mut self) -> Result<Schema, String> {
        let elements = &self.schema.elements;
        for ty in self.schema.types.iter_mut() {
            if let Type::Complex(ct) = ty
                && let Content::Elements { particle, .. } = &mut ct.content
            {
                let mut children = Children::default();
                let mut wildcards = Vec::new();
                collect(particle, false, elements, &mut children, &mut wildcards, &mut self.schema.namespaces);
                let flat = FlatSequence::of(particle, elements);
                if let Some(flat) = &flat {
                    children.place(flat);
                }
                ct.children = children;
                ct.wildcards = wildcards;
                ct.flat = flat;
            }
        }
        if let Some(i) = self.schema.types.iter().position(|t| matches!(t, Type::Pending)) {
            return Err(format!("type #{i} was referenced but never defined"));
        }
        let free = |t: &Type| matches!(t, Type::Simple(st) if matches!(st.variety, Variety::Atomic(Builtin::String)) && st.facets.is_empty());
        let free_text = self
            .schema
            .types
            .iter()
            .map(|t| match t {
                Type::Complex(ComplexType { content: Content::Text(inner), .. }) => free(&self.schema.types[*inner]),
                t => free(t),
            })
            .collect();
        self.schema.free_text = free_text;
        let required: Vec<bool> = self.schema.types.iter().map(Type::requires_attributes).collect();
        let (elements, free_text) = (&self.schema.elements, &self.schema.free_text);
        for ty in self.schema.types.iter_mut() {
            if let Type::Complex(ComplexType { children: Children { in_order: Some(order), .. }, .. }) = ty {
                for item in order.items.iter_mut() {
                    item.ty = elements[item.id].ty;
                    item.free_text = free_text.get(item.ty).copied().unwrap_or(false);
                    item.required_attributes = required.get(item.ty).copied().unwrap_or(true);
                }
            }
        }
        Ok(self.schema)
    }
}

fn is_facet(local: &str) -> bool {
    matches!(
        local,
        "enumeration"
            | "pattern"
            | "length"
            | "minLength"
            | "maxLength"
            | "totalDigits"
            | "fractionDigits"
            | "minInclusive"
            | "maxInclusive"
            | "minExclusive"
            | "maxExclusive"
    )
}

fn collect(
    p: &mut Particle,
    repeated: bool,
    elements: &[ElementDecl],
    children: &mut Children,
    wildcards: &mut Vec<Wildcard>,
    namespaces: &mut NamespaceIds,
) {
    let repeated = repeated || p.max > 1;
    match &mut p.term {
        Term::Element(id) => {
            *id = children.insert(&elements[*id].name, *id, repeated, namespaces);
        }
        Term::Sequence(ps) | Term::Choice(ps) | Term::All(ps) => {
            for c in ps {
                collect(c, repeated, elements, children, wildcards, namespaces);
            }
        }
        Term::Any(w) => wildcards.push(w.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name's key is its first eight bytes, zero-padded, as a little-endian number, with its
    /// length on top: for every length, however the bytes are read.
    #[test]
    fn name_keys_are_the_names_first_bytes_and_length() {
        let name = "abcdefghijkl";
        for n in 0..=name.len() {
            let mut head = [0u8; 8];
            let take = n.min(8);
            head[..take].copy_from_slice(&name.as_bytes()[..take]);
            let expected = u64::from_le_bytes(head) ^ ((n as u64) << 56);
            assert_eq!(name_key(&name[..n]), expected, "length {n}");
        }
    }

    /// The in-order table answers exactly what the look-up answers, from every place, for every
    /// child of every type of both Salesforce WSDLs (and finds nothing the look-up does not).
    #[test]
    fn the_in_order_table_agrees_with_the_look_up() {
        for file in [
            "wsdl/salesforce-enterprise-v40.wsdl",
            "wsdl/salesforce-partner-v58.wsdl",
            "wsdl/economic.wsdl",
            "wsdl/interhome.wsdl",
        ] {
            let wsdl = crate::soap::wsdl::Wsdl::load(std::path::Path::new(file)).expect("wsdl");
            let mut checked = 0;
            for ty in &wsdl.schema.types {
                let Type::Complex(ct) = ty else { continue };
                let Some(order) = &ct.children.in_order else { continue };
                for (local, same) in &ct.children.by_local {
                    for &(ns, ..) in same {
                        for from in 0..=order.keys.len() as u32 + 1 {
                            let looked_up = ct.children.get(ns, local);
                            assert_eq!(ct.children.get_from(from, ns, local), looked_up, "{local}");
                            let ahead = looked_up.map(|(.., place)| place).filter(|&p| p != NO_PLACE && p >= from);
                            let found = ct.children.next_in_order(from, ns, local).map(|(place, _)| place);
                            assert_eq!(found, ahead, "{local} from {from}");
                            checked += 1;
                        }
                    }
                }
                for from in 0..order.keys.len() as u32 {
                    assert_eq!(ct.children.get_from(from, 0, "NoSuchChild"), None);
                    assert!(ct.children.next_in_order(from, 0, "NoSuchChildWithALongName").is_none());
                }
            }
            assert!(checked > 0, "{file}: nothing checked");
        }
    }
}
