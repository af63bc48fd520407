//! Checks a request body against the compiled schema as its events stream by: one frame per open
//! element (its type, the children seen so far by declaration, its text if simple), and the
//! content model matched when the element closes. Nothing is kept of an element once it closes.
//!
//! Content models are matched greedily, which is exact for schemas that obey XSD's Unique
//! Particle Attribution rule (every schema that validators accept does).

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt::{self, Write as _};

use super::QName;
use super::schema::{
    Content, ElemId, ElementDecl, FlatSequence, NO_PLACE, Particle, Process, Schema, Term, Type, TypeId, XML_NS, XSI_NS,
};
use super::simple::{is_blank, trim_xml};

/// How strictly a route checks bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Everything the schema says.
    #[default]
    Strict,
    /// As strict, but elements and attributes the schema does not know are passed over, and a
    /// nillable element may be left out (Salesforce accepts that; many of its clients do it).
    Lax,
    /// No schema check (the envelope's shape and the operation are still checked).
    Off,
}

/// A broken rule and where: `Body/create/sObjects[2]/Name: exceeds maxLength 255`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub rule: String,
}

impl Violation {
    /// The kind of rule broken, for metrics: one of a few fixed names.
    pub fn kind(&self) -> &'static str {
        let r = self.rule.as_str();
        let has = |s: &str| r.contains(s);
        if has("missing required element") {
            "missing_element"
        } else if has("missing required attribute") {
            "missing_attribute"
        } else if has("may appear only once") || has("occurs more than") {
            "occurrence"
        } else if has("xsi:type") {
            "xsi_type"
        } else if has("nil") {
            "nil"
        } else if has("Length") || has("list has") {
            "length"
        } else if has("pattern") {
            "pattern"
        } else if has("allowed values") {
            "enumeration"
        } else if has("unexpected element") || has("is not allowed") || has("strict wildcard") {
            "unexpected_content"
        } else if has("is not a valid") || has("integer") || has("out of range") || has("matches none") {
            "type"
        } else if has("Inclusive") || has("Exclusive") || has("digits") {
            "range"
        } else {
            "other"
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.rule)
    }
}

/// One attribute of a start tag (the pass keeps one buffer of these for the whole request).
pub struct Attr<'a> {
    pub prefix: &'a str,
    pub local: &'a str,
    /// Its namespace (`""`: none, as for every unprefixed attribute).
    pub ns: Cow<'a, str>,
    /// Whether that namespace is XML Schema instance's or XML's (known once per declaration,
    /// so that no attribute compares namespace names).
    pub reserved: Reserved,
    pub value: Cow<'a, str>,
}

/// The namespaces whose attributes the validator treats apart from those a type declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserved {
    No,
    /// `xsi:type`, `xsi:nil` and the like.
    Xsi,
    /// `xml:lang` and the like.
    Xml,
}

impl Reserved {
    pub fn of(ns: &str) -> Reserved {
        match ns {
            XSI_NS => Reserved::Xsi,
            XML_NS => Reserved::Xml,
            _ => Reserved::No,
        }
    }
}

/// What an element's children are recorded as, for matching its content model.
#[derive(Clone, Copy, Debug)]
enum Child {
    Elem(ElemId),
    /// Matched a wildcard; the index of its namespace in `Validator::namespaces`.
    Wild(u32),
}

/// One open element. Its children are recorded on the validator's shared `children` stack from
/// `children_start` on; its path is built only when a fault needs it.
struct Frame<'i> {
    kind: Kind,
    repeatable: bool,
    // u32 indices keep a frame small enough to move without a memcpy call.
    ty: u32,
    /// Its declaration, for the `[n]` of repeated elements in paths (`NO_DECL` when none).
    decl: u32,
    children_start: u32,
    /// Matching a flat sequence as children arrive: the place reached and how often it occurred.
    /// (the place reached, how often it occurred); `(0, 0)` before the first child.
    flat: (u32, u32),
    /// Its text is a string without facets: neither kept nor checked.
    free_text: bool,
    local: &'i str,
    /// Borrowed from the request while it arrives in one piece.
    text: Cow<'i, str>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Check,
    /// `xsi:nil="true"`: must stay empty.
    Nil,
    /// Content nobody checks: `anyType`, skipped wildcards, unknown elements in lax mode.
    Skip,
}

const NO_DECL: u32 = u32::MAX;

/// The place an open element's flat sequence has reached (where its next child is looked for).
#[inline]
fn frame_place(frame: Option<&Frame<'_>>) -> u32 {
    frame.map_or(0, |f| f.flat.0)
}

pub struct Validator<'s, 'i> {
    schema: &'s Schema,
    mode: Mode,
    frames: Vec<Frame<'i>>,
    children: Vec<Child>,
    /// Where the operation element sits (`Body`).
    base: &'static str,
    namespaces: Vec<String>,
    root: Root,
    /// The last `xsi:type` resolved, for the next record of a batch naming the same: its value,
    /// the namespace its prefix was bound to (by address: a request keeps each namespace name
    /// once), the declared type it was checked against, and the type it names.
    last_xsi: Option<(&'i str, usize, TypeId, TypeId)>,
}

thread_local! {
    /// The frames and children vectors of the thread's last validator, emptied (as the envelope
    /// pass keeps its own buffers): a validator allocates nothing of its own per request.
    static SPARE: Cell<(Vec<Frame<'static>>, Vec<Child>)> = const { Cell::new((Vec::new(), Vec::new())) };
}

/// The validator's vectors go back to its thread for the next pass (see `super::set_aside`).
impl Drop for Validator<'_, '_> {
    fn drop(&mut self) {
        let frames = super::set_aside(std::mem::take(&mut self.frames));
        SPARE.set((frames, super::set_aside(std::mem::take(&mut self.children))));
    }
}

/// What the operation element is checked as.
#[derive(Clone, Copy, Debug)]
pub enum Root {
    Element(ElemId),
    Type(TypeId),
    Unchecked,
}

/// The namespace a prefix is bound to where the element starts (`""`: none; `None`: undeclared).
pub type Resolve<'r> = &'r dyn Fn(&str) -> Option<&'r str>;

impl<'s, 'i> Validator<'s, 'i> {
    /// A validator for one operation element; `base` is where it sits (`Body`).
    pub fn new(schema: &'s Schema, mode: Mode, root: Root, base: &'static str) -> Self {
        let (frames, children) = SPARE.replace((Vec::new(), Vec::new()));
        let (mut frames, mut children) = (super::relabel(frames), children);
        frames.reserve(8);
        children.reserve(32);
        Validator { schema, mode, frames, children, base, namespaces: Vec::new(), root, last_xsi: None }
    }

    /// The path of the open element: `Body/create/sObjects[2]/Name`.
    fn path(&self) -> String {
        let mut path = String::from(self.base);
        for (i, frame) in self.frames.iter().enumerate() {
            path.push('/');
            path.push_str(frame.local);
            if frame.repeatable && i > 0 {
                let siblings =
                    &self.children[self.frames[i - 1].children_start as usize..frame.children_start as usize];
                let n = siblings.iter().filter(|c| matches!(c, Child::Elem(id) if *id as u32 == frame.decl)).count();
                let _ = write!(path, "[{n}]");
            }
        }
        path
    }

    fn violation(&self, rule: impl Into<String>) -> Violation {
        Violation { path: self.path(), rule: rule.into() }
    }

    /// Opens a frame (`free_text`: whether its type's text is free, `Schema::free_text`; for
    /// checked elements only). Not inlined, so that this is the one place a frame is pushed and
    /// the compiler writes it straight into the vector: pushed from two places, the push became
    /// a call taking the frame from the stack, and reading back what had just been written there
    /// stalled (3.8 % of a 2 KB pass in perf).
    #[inline(never)]
    fn push(&mut self, kind: Kind, ty: TypeId, decl: u32, repeatable: bool, local: &'i str, free_text: bool) {
        let children_start = self.children.len() as u32;
        let ty = ty as u32;
        self.frames.push(Frame {
            kind,
            repeatable,
            ty,
            decl,
            children_start,
            flat: (0, 0),
            free_text: kind == Kind::Check && free_text,
            local,
            text: Cow::Borrowed(""),
        });
    }

    /// An element `{ns}local` starts (`ns_id`: the schema's number for `ns`). `resolve` gives
    /// the namespace of a prefix (for `xsi:type` values).
    ///
    /// Most elements of a request are the next child of a flat sequence, without attributes:
    /// those are matched here, inlined into the caller's loop (no call, no arguments spilled)
    /// and reading only what the sequence's item carries; everything else (attributes,
    /// `xsi:type`, wildcards, other content models, the operation element) goes to `start_any`,
    /// out of line.
    #[inline(always)]
    pub fn start(
        &mut self,
        ns: &str,
        ns_id: u32,
        local: &'i str,
        attrs: &[Attr<'i>],
        resolve: Resolve<'_>,
    ) -> Result<(), Violation> {
        let schema = self.schema;
        if attrs.is_empty()
            && let Some(&Frame { kind: Kind::Check, ty, flat: (at, _), .. }) = self.frames.last()
            && let Type::Complex(ct) = &schema.types[ty as usize]
            && let Some(flat) = &ct.flat
            && let Some((place, item)) = ct.children.next_in_order(at, ns_id, local)
            && !item.required_attributes
        {
            let lax = self.mode == Mode::Lax;
            if let Some(frame) = self.frames.last_mut()
                && let Err(rule) = flat_step(flat, &schema.elements, lax, &mut frame.flat, place)
            {
                return Err(self.violation(rule));
            }
            self.children.push(Child::Elem(item.id));
            self.push(Kind::Check, item.ty, item.id as u32, item.repeatable, local, item.free_text);
            return Ok(());
        }
        self.start_any(ns, ns_id, local, attrs, resolve)
    }

    /// `start` for any element: the operation element, children found by name or by wildcard,
    /// elements with attributes or whose type requires some, `xsi:type` and `xsi:nil`.
    #[inline(never)]
    fn start_any(
        &mut self,
        ns: &str,
        ns_id: u32,
        local: &'i str,
        attrs: &[Attr<'i>],
        resolve: Resolve<'_>,
    ) -> Result<(), Violation> {
        let schema = self.schema;
        // (declared type, nillable, declaration, may repeat)
        let (decl_ty, nillable, decl, repeatable) = match self.frames.last() {
            None => match self.root {
                Root::Element(id) => (schema.elements[id].ty, schema.elements[id].nillable, id as u32, false),
                Root::Type(ty) => (ty, false, NO_DECL, false),
                Root::Unchecked => return self.skip(local),
            },
            Some(Frame { kind: Kind::Skip, .. }) => return self.skip(local),
            Some(Frame { kind: Kind::Nil, .. }) => {
                return Err(self.violation(format!("element '{local}' is not allowed in a nil element")));
            }
            Some(&Frame { ty, .. }) => {
                let ty = ty as TypeId;
                let strict = self.mode == Mode::Strict;
                let not_allowed = |why: String| -> Option<String> { strict.then_some(why) };
                let found = match &schema.types[ty] {
                    Type::Complex(ct) => match &ct.content {
                        Content::Any => None,
                        Content::Elements { .. } => {
                            match ct.children.get_from(frame_place(self.frames.last()), ns_id, local) {
                                Some((id, repeatable, place)) => {
                                    if let Some(flat) = &ct.flat
                                        && let Some(frame) = self.frames.last_mut()
                                    {
                                        let lax = self.mode == Mode::Lax;
                                        if let Err(rule) =
                                            flat_step(flat, &schema.elements, lax, &mut frame.flat, place)
                                        {
                                            return Err(self.violation(rule));
                                        }
                                    }
                                    self.children.push(Child::Elem(id));
                                    let d = &schema.elements[id];
                                    Some(Ok((d.ty, d.nillable, id as u32, repeatable)))
                                }
                                None => match ct.wildcards.iter().find(|w| w.allows(ns)) {
                                    Some(w) => {
                                        let interned = intern(&mut self.namespaces, ns);
                                        self.children.push(Child::Wild(interned));
                                        let global = if w.process == Process::Skip {
                                            None
                                        } else {
                                            schema.element(&QName::new(ns, local))
                                        };
                                        match (w.process, global) {
                                            (Process::Skip, _) | (Process::Lax, None) => None,
                                            (_, Some(id)) => {
                                                let d = &schema.elements[id];
                                                Some(Ok((d.ty, d.nillable, NO_DECL, false)))
                                            }
                                            (Process::Strict, None) => Some(Err(format!(
                                                "element '{local}' matches a strict wildcard but no schema declares it"
                                            ))),
                                        }
                                    }
                                    None => not_allowed(format!("unexpected element '{local}'")).map(Err),
                                },
                            }
                        }
                        Content::Empty | Content::Text(_) => not_allowed(format!(
                            "element '{local}' is not allowed: {} has no child elements",
                            schema.type_name(ty)
                        ))
                        .map(Err),
                    },
                    Type::Simple(_) | Type::Pending => {
                        not_allowed(format!("element '{local}' is not allowed in a simple value")).map(Err)
                    }
                };
                match found {
                    None => return self.skip(local),
                    Some(Err(rule)) => return Err(self.violation(rule)),
                    Some(Ok(t)) => t,
                }
            }
        };
        self.push(Kind::Check, decl_ty, decl, repeatable, local, schema.free_text(decl_ty));
        if attrs.is_empty() && !schema.types[decl_ty].requires_attributes() {
            return Ok(());
        }
        let mut ty = decl_ty;
        for a in attrs.iter().filter(|a| a.reserved == Reserved::Xsi) {
            match a.local {
                "type" => ty = self.xsi_type(a, decl_ty, resolve)?,
                "nil" if matches!(trim_xml(&a.value), "true" | "1") => {
                    if !nillable {
                        return Err(self.violation("is not nillable but has xsi:nil=\"true\""));
                    }
                    if let Some(f) = self.frames.last_mut() {
                        f.kind = Kind::Nil;
                    }
                }
                _ => {}
            }
        }
        if let Some(f) = self.frames.last_mut() {
            f.ty = ty as u32;
            f.free_text = f.kind == Kind::Check && schema.free_text(ty);
        }
        self.check_attributes(ty, attrs)
    }

    /// The type `xsi:type` (`a`, e.g. `ens:Account`) names, checked to derive from the declared
    /// type. The records of a batch repeat it: the last one resolved is kept and reused while
    /// its text, the namespace its prefix is bound to, and the declared type are the same.
    fn xsi_type(&mut self, a: &Attr<'i>, decl_ty: TypeId, resolve: Resolve<'_>) -> Result<TypeId, Violation> {
        let schema = self.schema;
        let value = trim_xml(&a.value);
        let (prefix, local) = super::split_qname(value);
        let ns = resolve(prefix);
        let ns_at = ns.map_or(0, |n| n.as_ptr() as usize);
        if let Some((last, last_ns, last_decl, named)) = self.last_xsi
            && last_ns == ns_at
            && last_decl == decl_ty
            && last == value
        {
            return Ok(named);
        }
        let named = ns
            .and_then(|ns| schema.named_type_in(ns, local))
            .ok_or_else(|| self.violation(format!("xsi:type '{}' is not a type of this schema", a.value)))?;
        if !schema.derives_from(named, decl_ty) {
            let rule =
                format!("xsi:type '{}' is not derived from the declared type {}", a.value, schema.type_name(decl_ty));
            return Err(self.violation(rule));
        }
        if let Cow::Borrowed(raw) = a.value {
            self.last_xsi = Some((trim_xml(raw), ns_at, decl_ty, named));
        }
        Ok(named)
    }

    fn skip(&mut self, local: &'i str) -> Result<(), Violation> {
        self.push(Kind::Skip, 0, NO_DECL, false, local, false);
        Ok(())
    }

    fn check_attributes(&self, ty: TypeId, attrs: &[Attr<'_>]) -> Result<(), Violation> {
        let schema = self.schema;
        let (decls, any_attribute) = match &schema.types[ty] {
            Type::Complex(ct) => (ct.attributes.as_slice(), ct.any_attribute),
            _ => (&[][..], false),
        };
        for a in attrs.iter().filter(|a| a.reserved == Reserved::No) {
            match decls.iter().find(|d| d.name.ns == a.ns && d.name.local == a.local) {
                Some(d) => {
                    schema
                        .check_simple(d.ty, &a.value)
                        .map_err(|rule| self.violation(format!("attribute '{}': {rule}", a.local)))?;
                }
                None if any_attribute || self.mode != Mode::Strict => {}
                None => return Err(self.violation(format!("attribute '{}' is not allowed", a.local))),
            }
        }
        for d in decls.iter().filter(|d| d.required) {
            if !attrs.iter().any(|a| a.ns == d.name.ns && a.local == d.name.local) {
                return Err(self.violation(format!("missing required attribute '{}'", d.name.local)));
            }
        }
        Ok(())
    }

    /// Text inside the current element.
    #[inline(always)]
    pub fn text(&mut self, text: Cow<'i, str>) -> Result<(), Violation> {
        let schema = self.schema;
        let Some(frame) = self.frames.last_mut() else { return Ok(()) };
        if frame.free_text {
            return Ok(());
        }
        let problem = match frame.kind {
            Kind::Skip => None,
            Kind::Nil => (!is_blank(&text)).then_some("a nil element must be empty"),
            Kind::Check => match &schema.types[frame.ty as usize] {
                Type::Simple(_) | Type::Complex(super::schema::ComplexType { content: Content::Text(_), .. }) => {
                    if frame.text.is_empty() {
                        frame.text = text;
                    } else {
                        frame.text.to_mut().push_str(&text);
                    }
                    None
                }
                Type::Complex(ct) => match &ct.content {
                    Content::Elements { mixed: false, .. } if !is_blank(&text) => {
                        Some("text is not allowed among child elements")
                    }
                    Content::Empty if !is_blank(&text) => Some("text is not allowed: the element must be empty"),
                    _ => None,
                },
                Type::Pending => None,
            },
        };
        match problem {
            Some(rule) => Err(self.violation(rule)),
            None => Ok(()),
        }
    }

    /// The current element ends: its text or children are checked.
    #[inline(always)]
    pub fn end(&mut self) -> Result<(), Violation> {
        let Some(frame) = self.frames.last() else { return Ok(()) };
        if frame.kind == Kind::Check && !frame.free_text {
            let children = &self.children[frame.children_start as usize..];
            if let Err(rule) = self.check_content(frame, children) {
                return Err(self.violation(rule));
            }
        }
        if let Some(frame) = self.frames.pop() {
            self.children.truncate(frame.children_start as usize);
        }
        Ok(())
    }

    fn check_content(&self, frame: &Frame<'_>, children: &[Child]) -> Result<(), String> {
        let ty = frame.ty as TypeId;
        match &self.schema.types[ty] {
            Type::Simple(_) => self.schema.check_simple(ty, &frame.text),
            Type::Complex(ct) => match &ct.content {
                Content::Text(t) => self.schema.check_simple(*t, &frame.text),
                Content::Elements { particle, .. } => {
                    if let Some(flat) = &ct.flat {
                        let lax = self.mode == Mode::Lax;
                        return flat_finish(flat, &self.schema.elements, lax, frame.flat);
                    }
                    let m = Matcher {
                        schema: self.schema,
                        children,
                        namespaces: &self.namespaces,
                        lax: self.mode == Mode::Lax,
                    };
                    let end = m.particle(particle, 0)?;
                    match children.get(end) {
                        None => Ok(()),
                        Some(c) => Err(format!("unexpected element {}", m.describe(*c))),
                    }
                }
                Content::Empty | Content::Any => Ok(()),
            },
            Type::Pending => Ok(()),
        }
    }
}

/// Matching a flat sequence as children arrive: the next child is at `place`. Its place must
/// not go back, repeat past its maximum, or skip a required element. `state`: the place
/// reached and how often it occurred, updated in place (returning it costs a store-to-load
/// stall per element, measured with perf).
#[inline(always)]
fn flat_step(
    flat: &FlatSequence,
    elements: &[ElementDecl],
    lax: bool,
    state: &mut (u32, u32),
    place: u32,
) -> Result<(), String> {
    let (at, count) = *state;
    let name = |i: u32| flat.items.get(i as usize).map_or("", |(id, _, _)| elements[*id].name.local.as_str());
    if place == NO_PLACE || place < at {
        return Err(format!("unexpected element '{}'", name(place)));
    }
    if place == at {
        let max = flat.items[at as usize].2;
        if count >= max {
            let name = name(at);
            return Err(if max == 1 {
                format!("element {name} may appear only once")
            } else {
                format!("element {name} occurs more than {max} times")
            });
        }
        state.1 = count + 1;
        return Ok(());
    }
    let (at, place) = (at as usize, place as usize);
    let may_skip = |&(id, min, _): &(ElemId, u32, u32)| min == 0 || (lax && elements[id].nillable);
    if count < flat.items[at].1 && !may_skip(&flat.items[at]) {
        return Err(missing(elements, flat.items[at].0));
    }
    match flat.required_from(at + 1, lax) {
        Some(skipped) if skipped < place => Err(missing(elements, flat.items[skipped].0)),
        _ => {
            *state = (place as u32, 1);
            Ok(())
        }
    }
}

/// The end of an element whose children were matched by `flat_step`: nothing required may be
/// left.
fn flat_finish(
    flat: &FlatSequence,
    elements: &[ElementDecl],
    lax: bool,
    (at, count): (u32, u32),
) -> Result<(), String> {
    let may_skip = |&(id, min, _): &(ElemId, u32, u32)| min == 0 || (lax && elements[id].nillable);
    let at = at as usize;
    if let Some(item) = flat.items.get(at)
        && count < item.1
        && !may_skip(item)
    {
        return Err(missing(elements, item.0));
    }
    match flat.required_from(at + 1, lax) {
        Some(skipped) => Err(missing(elements, flat.items[skipped].0)),
        None => Ok(()),
    }
}

fn missing(elements: &[ElementDecl], id: ElemId) -> String {
    format!("missing required element {}", elements[id].name.local)
}

fn intern(table: &mut Vec<String>, ns: &str) -> u32 {
    match table.iter().position(|n| n == ns) {
        Some(i) => i as u32,
        None => {
            table.push(ns.to_owned());
            (table.len() - 1) as u32
        }
    }
}

/// Greedy content-model matching over the recorded children of one element.
struct Matcher<'m> {
    schema: &'m Schema,
    children: &'m [Child],
    namespaces: &'m [String],
    /// Lax: a nillable element may be left out (absent reads as nil; Salesforce clients rely on it).
    lax: bool,
}

impl Matcher<'_> {
    fn describe(&self, c: Child) -> String {
        match c {
            Child::Elem(id) => format!("'{}'", self.schema.elements[id].name.local),
            Child::Wild(ns) => format!("from namespace '{}'", self.namespaces[ns as usize]),
        }
    }

    fn particle(&self, p: &Particle, mut pos: usize) -> Result<usize, String> {
        let mut count = 0u32;
        while count < p.max && pos < self.children.len() && self.starts(&p.term, pos) {
            let next = self.term(&p.term, pos)?;
            if next == pos {
                break;
            }
            pos = next;
            count += 1;
        }
        if let Term::Element(id) = &p.term
            && count == p.max
            && p.max > 0
            && pos < self.children.len()
            && self.starts(&p.term, pos)
        {
            let name = &self.schema.elements[*id].name.local;
            return Err(if p.max == 1 {
                format!("element {name} may appear only once")
            } else {
                format!("element {name} occurs more than {} times", p.max)
            });
        }
        let nillable_absent =
            self.lax && count == 0 && matches!(p.term, Term::Element(id) if self.schema.elements[id].nillable);
        if count < p.min && !self.emptiable_term(&p.term) && !nillable_absent {
            return Err(match (&p.term, count) {
                (Term::Element(id), 0) => format!("missing required element {}", self.schema.elements[*id].name.local),
                (Term::Element(id), n) => {
                    format!(
                        "element {} occurs {n} times, at least {} required",
                        self.schema.elements[*id].name.local, p.min
                    )
                }
                (t, _) => format!("missing required element {}", self.first_required(t)),
            });
        }
        Ok(pos)
    }

    fn term(&self, t: &Term, pos: usize) -> Result<usize, String> {
        match t {
            Term::Element(_) | Term::Any(_) => Ok(pos + 1),
            Term::Sequence(ps) => {
                let mut at = pos;
                let mut rest = ps.as_slice();
                while let Some((p, tail)) = rest.split_first() {
                    // Optional elements the current child is not: passed over without a call (typed
                    // sObjects have a hundred or more of them).
                    if let Term::Element(id) = p.term
                        && p.min == 0
                        && !matches!(self.children.get(at), Some(Child::Elem(c)) if *c == id)
                    {
                        rest = tail;
                        continue;
                    }
                    at = self.particle(p, at)?;
                    rest = tail;
                }
                Ok(at)
            }
            Term::Choice(ps) => {
                if pos < self.children.len()
                    && let Some(p) = ps.iter().find(|p| p.max > 0 && self.starts(&p.term, pos))
                {
                    return self.particle(p, pos);
                }
                if ps.iter().any(|p| p.min == 0 || self.emptiable_term(&p.term)) {
                    Ok(pos)
                } else {
                    Err(format!("missing required element {}", self.first_required(t)))
                }
            }
            Term::All(ps) => {
                let mut seen = vec![false; ps.len()];
                let mut pos = pos;
                while pos < self.children.len() {
                    match ps.iter().enumerate().find(|(i, p)| !seen[*i] && self.starts(&p.term, pos)) {
                        Some((i, p)) => {
                            pos = self.particle(p, pos)?;
                            seen[i] = true;
                        }
                        None => break,
                    }
                }
                for (i, p) in ps.iter().enumerate() {
                    if !seen[i] && p.min > 0 && !self.emptiable_term(&p.term) {
                        return Err(format!("missing required element {}", self.first_required(&p.term)));
                    }
                }
                Ok(pos)
            }
        }
    }

    /// Whether the child at `pos` can begin `t`.
    fn starts(&self, t: &Term, pos: usize) -> bool {
        let Some(child) = self.children.get(pos) else { return false };
        match t {
            // Ids are canonical per content model (see `schema::Children`): equal ids, equal names.
            Term::Element(id) => matches!(child, Child::Elem(c) if *c == *id),
            Term::Any(w) => match child {
                Child::Elem(c) => w.allows(&self.schema.elements[*c].name.ns),
                Child::Wild(ns) => w.allows(&self.namespaces[*ns as usize]),
            },
            Term::Sequence(ps) => {
                for p in ps {
                    if p.max > 0 && self.starts(&p.term, pos) {
                        return true;
                    }
                    if !(p.min == 0 || self.emptiable_term(&p.term)) {
                        return false;
                    }
                }
                false
            }
            Term::Choice(ps) | Term::All(ps) => ps.iter().any(|p| p.max > 0 && self.starts(&p.term, pos)),
        }
    }

    fn emptiable_term(&self, t: &Term) -> bool {
        match t {
            Term::Element(_) | Term::Any(_) => false,
            Term::Sequence(ps) | Term::All(ps) => ps.iter().all(|p| p.min == 0 || self.emptiable_term(&p.term)),
            Term::Choice(ps) => ps.iter().any(|p| p.min == 0 || self.emptiable_term(&p.term)),
        }
    }

    /// The name of the first element `t` requires, for "missing required element" messages.
    fn first_required(&self, t: &Term) -> String {
        match t {
            Term::Element(id) => self.schema.elements[*id].name.local.clone(),
            Term::Any(_) => "(any element)".to_owned(),
            Term::Sequence(ps) => ps
                .iter()
                .find(|p| p.min > 0 && !self.emptiable_term(&p.term))
                .map(|p| self.first_required(&p.term))
                .unwrap_or_default(),
            Term::Choice(ps) => {
                let names: Vec<String> = ps.iter().map(|p| self.first_required(&p.term)).collect();
                format!("(one of: {})", names.join(", "))
            }
            Term::All(ps) => ps.iter().find(|p| p.min > 0).map(|p| self.first_required(&p.term)).unwrap_or_default(),
        }
    }
}
