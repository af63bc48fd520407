//! XSD simple types: the built-in types a SOAP API uses, their lexical rules, and the facets a
//! schema restricts them with (`enumeration`, `pattern`, lengths, bounds, digits).

use std::fmt;

/// Built-in XSD types, by what their values must look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    /// `anySimpleType`, `string`, `normalizedString`, `token`, `anyURI`, `language`, …: any text.
    String,
    Boolean,
    /// `integer` and its derived types, with their bounds.
    Integer {
        min: i128,
        max: i128,
    },
    Decimal,
    /// `double` and `float`, with `INF`, `-INF`, `NaN`.
    Double,
    Date,
    DateTime,
    Time,
    Duration,
    Base64,
    Hex,
    /// `QName`, `NCName`, `Name`, `ID`, `IDREF`, `NMTOKEN`: XML names.
    Name,
    /// `gYear`, `gYearMonth`, `gMonthDay`, `gDay`, `gMonth`: checked loosely.
    Gregorian,
}

impl Builtin {
    /// The built-in with this XSD local name (also used for SOAP-encoding's namesakes).
    pub fn by_name(local: &str) -> Option<Builtin> {
        use Builtin::*;
        let int = |min: i128, max: i128| Some(Integer { min, max });
        match local {
            "anySimpleType" | "string" | "normalizedString" | "token" | "anyURI" | "language" | "NOTATION"
            | "ENTITY" | "ENTITIES" | "IDREFS" | "NMTOKENS" => Some(String),
            "boolean" => Some(Boolean),
            "integer" => int(i128::MIN, i128::MAX),
            "long" => int(i64::MIN.into(), i64::MAX.into()),
            "int" => int(i32::MIN.into(), i32::MAX.into()),
            "short" => int(i16::MIN.into(), i16::MAX.into()),
            "byte" => int(i8::MIN.into(), i8::MAX.into()),
            "nonNegativeInteger" => int(0, i128::MAX),
            "positiveInteger" => int(1, i128::MAX),
            "nonPositiveInteger" => int(i128::MIN, 0),
            "negativeInteger" => int(i128::MIN, -1),
            "unsignedLong" => int(0, u64::MAX.into()),
            "unsignedInt" => int(0, u32::MAX.into()),
            "unsignedShort" => int(0, u16::MAX.into()),
            "unsignedByte" => int(0, u8::MAX.into()),
            "decimal" => Some(Decimal),
            "double" | "float" => Some(Double),
            "date" => Some(Date),
            "dateTime" => Some(DateTime),
            "time" => Some(Time),
            "duration" => Some(Duration),
            "base64Binary" => Some(Base64),
            "hexBinary" => Some(Hex),
            "QName" | "NCName" | "Name" | "ID" | "IDREF" | "NMTOKEN" => Some(Name),
            "gYear" | "gYearMonth" | "gMonthDay" | "gDay" | "gMonth" => Some(Gregorian),
            _ => None,
        }
    }

    /// Whether whitespace around the value is collapsed before checking (all but strings).
    fn collapses(self) -> bool {
        !matches!(self, Builtin::String)
    }

    /// Checks `value` against this type's lexical space; the error names the rule.
    pub fn check(self, value: &str) -> Result<(), String> {
        let v = if self.collapses() { trim_xml(value) } else { value };
        let ok = match self {
            Builtin::String => true,
            Builtin::Boolean => matches!(v, "true" | "false" | "1" | "0"),
            Builtin::Integer { min, max } => {
                return match parse_integer(v) {
                    Some(n) if n >= min && n <= max => Ok(()),
                    Some(_) => Err(format!("'{}' is out of range {min}..={max}", shorten(v))),
                    None => Err(format!("'{}' is not an integer", shorten(v))),
                };
            }
            Builtin::Decimal => is_decimal(v),
            Builtin::Double => {
                // The lexical check is the whole rule: every decimal with an exponent is a double
                // (out-of-range values round to ±INF).
                matches!(v, "INF" | "-INF" | "+INF" | "NaN") || is_float(v)
            }
            Builtin::Date => is_date(v.strip_prefix('-').unwrap_or(v)).is_some_and(is_timezone),
            Builtin::DateTime => is_date_time(v),
            Builtin::Time => is_time(v).is_some_and(is_timezone),
            Builtin::Duration => is_duration(v),
            Builtin::Base64 => is_base64(v),
            Builtin::Hex => v.len() % 2 == 0 && v.bytes().all(|b| b.is_ascii_hexdigit()),
            Builtin::Name => !v.is_empty() && !v.contains(char::is_whitespace),
            Builtin::Gregorian => !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b"-:+Z".contains(&b)),
        };
        if ok { Ok(()) } else { Err(format!("'{}' is not a valid {self}", shorten(value))) }
    }

    /// The number a numeric value stands for, for bound facets.
    pub fn numeric(self, value: &str) -> Option<f64> {
        match self {
            Builtin::Integer { .. } | Builtin::Decimal | Builtin::Double => trim_xml(value).parse::<f64>().ok(),
            _ => None,
        }
    }
}

impl fmt::Display for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Builtin::String => "string",
            Builtin::Boolean => "boolean",
            Builtin::Integer { .. } => "integer",
            Builtin::Decimal => "decimal",
            Builtin::Double => "double",
            Builtin::Date => "date",
            Builtin::DateTime => "dateTime",
            Builtin::Time => "time",
            Builtin::Duration => "duration",
            Builtin::Base64 => "base64Binary",
            Builtin::Hex => "hexBinary",
            Builtin::Name => "XML name",
            Builtin::Gregorian => "date part",
        })
    }
}

/// XML's whitespace (space, tab, CR, LF) removed from both ends: byte-wise, as it is all ASCII.
#[inline]
pub fn trim_xml(v: &str) -> &str {
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let bytes = v.as_bytes();
    let start = bytes.iter().position(|b| !space(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !space(b)).map_or(start, |i| i + 1);
    // Both ends lie next to ASCII bytes, so on character boundaries.
    v.get(start..end).unwrap_or_default()
}

/// Whether `v` is only XML whitespace.
pub fn is_blank(v: &str) -> bool {
    v.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// At most this much of a value is quoted back in a fault.
fn shorten(v: &str) -> String {
    const MAX: usize = 40;
    if v.chars().count() <= MAX { v.to_owned() } else { format!("{}…", v.chars().take(MAX).collect::<String>()) }
}

fn parse_integer(v: &str) -> Option<i128> {
    let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 18 {
        return v.strip_prefix('+').unwrap_or(v).parse().ok();
    }
    // Up to 18 digits fit an i64: summed here, the digits being checked already.
    let n = digits.bytes().fold(0i64, |n, b| n * 10 + i64::from(b - b'0'));
    Some(i128::from(if v.starts_with('-') { -n } else { n }))
}

fn is_decimal(v: &str) -> bool {
    let v = v.strip_prefix(['+', '-']).unwrap_or(v);
    let (int, frac) = match v.bytes().position(|b| b == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, ""),
    };
    (!int.is_empty() || !frac.is_empty())
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

fn is_float(v: &str) -> bool {
    let (mantissa, exponent) = match v.bytes().position(|b| b == b'e' || b == b'E') {
        Some(i) => (&v[..i], Some(&v[i + 1..])),
        None => (v, None),
    };
    is_decimal(mantissa) && exponent.is_none_or(|e| parse_integer(e).is_some())
}

/// The number the first `n` characters of `s` spell (all digits), and what follows.
fn digits(s: &str, n: usize) -> Option<(u32, &str)> {
    let head = s.as_bytes().get(..n)?;
    let mut value = 0u32;
    for b in head {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u32::from(b - b'0'))?;
    }
    Some((value, s.get(n..)?))
}

/// `YYYY-MM-DD` (year may be longer); returns what follows.
fn is_date(v: &str) -> Option<&str> {
    let year_len = v.bytes().position(|b| b == b'-')?;
    if year_len < 4 {
        return None;
    }
    let (_, rest) = digits(v, year_len)?;
    let (month, rest) = digits(rest.strip_prefix('-')?, 2)?;
    let (day, rest) = digits(rest.strip_prefix('-')?, 2)?;
    ((1..=12).contains(&month) && (1..=31).contains(&day)).then_some(rest)
}

/// `hh:mm:ss(.s+)?`; returns what follows.
fn is_time(v: &str) -> Option<&str> {
    let (h, rest) = digits(v, 2)?;
    let (m, rest) = digits(rest.strip_prefix(':')?, 2)?;
    let (s, mut rest) = digits(rest.strip_prefix(':')?, 2)?;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    (h <= 24 && m <= 59 && s <= 60).then_some(rest)
}

fn is_timezone(v: &str) -> bool {
    if v.is_empty() || v == "Z" {
        return true;
    }
    let Some(rest) = v.strip_prefix(['+', '-']) else { return false };
    matches!((digits(rest, 2), rest.get(2..3), rest.get(3..).and_then(|r| digits(r, 2))), (Some((h, _)), Some(":"), Some((m, ""))) if h <= 14 && m <= 59)
}

fn is_date_time(v: &str) -> bool {
    let v = v.strip_prefix('-').unwrap_or(v);
    is_date(v).and_then(|rest| rest.strip_prefix('T')).and_then(is_time).is_some_and(is_timezone)
}

fn is_duration(v: &str) -> bool {
    let v = v.strip_prefix('-').unwrap_or(v);
    let Some(rest) = v.strip_prefix('P') else { return false };
    !rest.is_empty()
        && !rest.ends_with('T')
        && rest.bytes().all(|b| b.is_ascii_digit() || b"YMDTHS.".contains(&b))
        && rest.bytes().any(|b| b"YMDHS".contains(&b))
}

fn is_base64(v: &str) -> bool {
    let mut n = 0usize;
    let mut padding = 0usize;
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' if padding == 0 => n += 1,
            b'=' => {
                padding += 1;
                n += 1;
            }
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ => return false,
        }
    }
    n.is_multiple_of(4) && padding <= 2
}

/// Facets that narrow a simple type. Each derivation step's patterns are alternatives; the steps
/// must all hold.
#[derive(Clone, Debug, Default)]
pub struct Facets {
    pub enumeration: Option<Vec<String>>,
    pub patterns: Vec<Vec<Pattern>>,
    pub length: Option<usize>,
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    pub min_inclusive: Option<f64>,
    pub max_inclusive: Option<f64>,
    pub min_exclusive: Option<f64>,
    pub max_exclusive: Option<f64>,
    pub total_digits: Option<usize>,
    pub fraction_digits: Option<usize>,
}

/// An XSD `pattern`, compiled (XSD patterns match the whole value).
#[derive(Clone, Debug)]
pub struct Pattern {
    pub source: String,
    regex: regex::Regex,
}

impl Pattern {
    pub fn compile(source: &str) -> Result<Pattern, String> {
        let translated = translate_pattern(source);
        regex::Regex::new(&format!("^(?:{translated})$"))
            .map(|regex| Pattern { source: source.to_owned(), regex })
            .map_err(|e| format!("pattern '{source}' cannot be compiled: {e}"))
    }
}

/// XSD regular expressions are close to Rust's; the name classes `\i` and `\c` are not.
fn translate_pattern(p: &str) -> String {
    p.replace("\\i", "[_:A-Za-z]")
        .replace("\\I", "[^_:A-Za-z]")
        .replace("\\c", "[-._:A-Za-z0-9]")
        .replace("\\C", "[^-._:A-Za-z0-9]")
}

impl Facets {
    /// Whether there is no facet at all (most types): then there is nothing to check.
    pub fn is_empty(&self) -> bool {
        self.enumeration.is_none()
            && self.patterns.is_empty()
            && self.length.is_none()
            && self.min_length.is_none()
            && self.max_length.is_none()
            && self.min_inclusive.is_none()
            && self.max_inclusive.is_none()
            && self.min_exclusive.is_none()
            && self.max_exclusive.is_none()
            && self.total_digits.is_none()
            && self.fraction_digits.is_none()
    }

    /// Checks a value (already known to be lexically valid for `base`) against the facets.
    pub fn check(&self, base: Builtin, value: &str) -> Result<(), String> {
        let v = if base.collapses() { trim_xml(value) } else { value };
        if let Some(allowed) = &self.enumeration
            && !allowed.iter().any(|a| a == v)
        {
            let shown: Vec<&str> = allowed.iter().take(8).map(String::as_str).collect();
            let more = if allowed.len() > 8 { ", …" } else { "" };
            return Err(format!("'{}' is not one of the allowed values ({}{more})", shorten(v), shown.join(", ")));
        }
        for step in &self.patterns {
            if !step.iter().any(|p| p.regex.is_match(v)) {
                let sources: Vec<&str> = step.iter().map(|p| p.source.as_str()).collect();
                return Err(format!("'{}' does not match pattern {}", shorten(v), sources.join(" | ")));
            }
        }
        if self.length.is_some() || self.min_length.is_some() || self.max_length.is_some() {
            self.check_length(base, v)?;
        }
        let bounded = self.min_inclusive.is_some()
            || self.max_inclusive.is_some()
            || self.min_exclusive.is_some()
            || self.max_exclusive.is_some()
            || self.total_digits.is_some()
            || self.fraction_digits.is_some();
        if bounded && let Some(x) = base.numeric(v) {
            self.check_number(v, x)?;
        }
        Ok(())
    }

    fn check_length(&self, base: Builtin, v: &str) -> Result<(), String> {
        let len = match base {
            Builtin::Base64 => v.bytes().filter(|b| !b.is_ascii_whitespace()).count() / 4 * 3,
            Builtin::Hex => v.len() / 2,
            _ => v.chars().count(),
        };
        if let Some(n) = self.length.filter(|n| len != *n) {
            return Err(format!("length {len} is not {n}"));
        }
        if let Some(n) = self.max_length.filter(|n| len > *n) {
            return Err(format!("exceeds maxLength {n} (length {len})"));
        }
        if let Some(n) = self.min_length.filter(|n| len < *n) {
            return Err(format!("shorter than minLength {n} (length {len})"));
        }
        Ok(())
    }

    fn check_number(&self, v: &str, x: f64) -> Result<(), String> {
        let bound =
            |ok: bool, what: &str, b: f64| if ok { Ok(()) } else { Err(format!("{} is {what} {b}", shorten(v))) };
        if let Some(b) = self.min_inclusive {
            bound(x >= b, "below minInclusive", b)?;
        }
        if let Some(b) = self.max_inclusive {
            bound(x <= b, "above maxInclusive", b)?;
        }
        if let Some(b) = self.min_exclusive {
            bound(x > b, "not above minExclusive", b)?;
        }
        if let Some(b) = self.max_exclusive {
            bound(x < b, "not below maxExclusive", b)?;
        }
        let unsigned = v.trim_start_matches(['+', '-']);
        let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let frac = frac.trim_end_matches('0');
        let total = int.trim_start_matches('0').len() + frac.len();
        if let Some(n) = self.total_digits.filter(|n| total > *n) {
            return Err(format!("{} has more than totalDigits {n}", shorten(v)));
        }
        if let Some(n) = self.fraction_digits.filter(|n| frac.len() > *n) {
            return Err(format!("{} has more than fractionDigits {n}", shorten(v)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_spaces() {
        let ok = |b: Builtin, v: &str| assert!(b.check(v).is_ok(), "{b} {v}");
        let bad = |b: Builtin, v: &str| assert!(b.check(v).is_err(), "{b} {v}");
        let int = Builtin::by_name("int").expect("int");
        ok(int, " 42 ");
        ok(int, "-2147483648");
        bad(int, "2147483648");
        bad(int, "4x");
        ok(Builtin::Boolean, "true");
        bad(Builtin::Boolean, "yes");
        ok(Builtin::Decimal, "-1.50");
        bad(Builtin::Decimal, "1e3");
        ok(Builtin::Double, "1.5E-3");
        ok(Builtin::Double, "INF");
        bad(Builtin::Double, "one");
        ok(Builtin::Date, "2026-11-22");
        ok(Builtin::Date, "2026-11-22Z");
        bad(Builtin::Date, "2026-13-01");
        ok(Builtin::DateTime, "2026-11-22T07:04:59.123Z");
        ok(Builtin::DateTime, "2026-11-22T07:04:59+01:00");
        bad(Builtin::DateTime, "2026-11-22 07:04:59");
        ok(Builtin::Base64, "aGVsbG8=");
        bad(Builtin::Base64, "aGVsbG8");
        ok(Builtin::Duration, "P1DT2H");
        bad(Builtin::Duration, "P");
    }

    #[test]
    fn facets() {
        let id = Facets {
            length: Some(18),
            patterns: vec![vec![Pattern::compile("[a-zA-Z0-9]{18}").expect("p")]],
            ..Facets::default()
        };
        assert!(id.check(Builtin::String, "001000000000000AAA").is_ok());
        assert!(id.check(Builtin::String, "001000000000000AA!").unwrap_err().contains("does not match pattern"));
        let name = Facets { max_length: Some(5), ..Facets::default() };
        assert_eq!(name.check(Builtin::String, "abcdef").unwrap_err(), "exceeds maxLength 5 (length 6)");
        let e = Facets { enumeration: Some(vec!["a".into(), "b".into()]), ..Facets::default() };
        assert!(e.check(Builtin::String, "c").unwrap_err().contains("not one of"));
        let d =
            Facets { total_digits: Some(4), fraction_digits: Some(1), min_inclusive: Some(0.0), ..Facets::default() };
        assert!(d.check(Builtin::Decimal, "12.5").is_ok());
        assert!(d.check(Builtin::Decimal, "12.55").is_err());
        assert!(d.check(Builtin::Decimal, "-1").is_err());
        assert!(Pattern::compile("\\i\\c*").is_ok());
    }
}
