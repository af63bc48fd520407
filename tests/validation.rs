//! Schema validation against the real Salesforce partner and enterprise WSDLs, and one wrong
//! request for each rule (the rules fixture covers constructs Salesforce's request types lack).
//! These go through `offline::validate`, the same pass the proxy runs, and the fault it would send.

// A panic in a test is a failed test: unwrap freely here.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::sync::OnceLock;

use oauth_egress::offline::{self, Verdict};
use oauth_egress::soap::envelope::Limits;
use oauth_egress::soap::validate::Mode;
use oauth_egress::soap::wsdl::Wsdl;
use support::manifest_dir;

fn load(cell: &'static OnceLock<Wsdl>, path: &str) -> &'static Wsdl {
    cell.get_or_init(|| Wsdl::load(&manifest_dir().join(path)).unwrap())
}
fn partner() -> &'static Wsdl {
    static W: OnceLock<Wsdl> = OnceLock::new();
    load(&W, "wsdl/salesforce-partner-v58.wsdl")
}
fn enterprise() -> &'static Wsdl {
    static W: OnceLock<Wsdl> = OnceLock::new();
    load(&W, "wsdl/salesforce-enterprise-v40.wsdl")
}
fn rules() -> &'static Wsdl {
    static W: OnceLock<Wsdl> = OnceLock::new();
    load(&W, "tests/fixtures/rules.wsdl")
}

fn run(w: &Wsdl, body: &str, mode: Mode, action: Option<&str>) -> Result<String, String> {
    match offline::validate(w, body.as_bytes(), mode, action, &Limits::default()) {
        Verdict::Valid(op) => Ok(op),
        Verdict::Fault(f) => Err(f),
    }
}

#[track_caller]
fn valid(w: &Wsdl, body: &str, op: &str) {
    assert_eq!(run(w, body, Mode::Strict, None), Ok(op.to_owned()));
}

#[track_caller]
fn invalid(w: &Wsdl, body: &str, says: &str) {
    invalid_with(w, body, Mode::Strict, None, says);
}

#[track_caller]
fn invalid_with(w: &Wsdl, body: &str, mode: Mode, action: Option<&str>, says: &str) {
    let fault = run(w, body, mode, action).expect_err("should be refused");
    let reason = fault.split("<faultstring>").nth(1).and_then(|r| r.split("</faultstring>").next()).unwrap_or(&fault);
    assert!(reason.contains(says), "expected '{says}', got '{reason}'");
}

const P: &str = r#"xmlns:urn="urn:partner.soap.sforce.com" xmlns:ens="urn:sobject.partner.soap.sforce.com""#;
const E: &str = r#"xmlns:urn="urn:enterprise.soap.sforce.com" xmlns:ens="urn:sobject.enterprise.soap.sforce.com""#;

fn env(ns: &str, body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" {ns}>
  <soapenv:Header><urn:SessionHeader><urn:sessionId>alice@corp.example.com</urn:sessionId></urn:SessionHeader></soapenv:Header>
  <soapenv:Body>{body}</soapenv:Body>
</soapenv:Envelope>"#
    )
}

// === real requests, partner WSDL ===

#[test]
fn partner_requests_as_clients_send_them() {
    let w = partner();
    valid(
        w,
        &env(P, "<urn:login><urn:username>u@x.com</urn:username><urn:password>pw</urn:password></urn:login>"),
        "login",
    );
    valid(w, &env(P, "<urn:query><urn:queryString>SELECT Id FROM Account</urn:queryString></urn:query>"), "query");
    valid(
        w,
        &env(P, "<urn:queryMore><urn:queryLocator>01gD0000002HU6KIAW-2000</urn:queryLocator></urn:queryMore>"),
        "queryMore",
    );
    valid(
        w,
        &env(
            P,
            "<urn:create>\
               <urn:sObjects><ens:type>Account</ens:type><ens:Id xsi:nil=\"true\"/><ens:Name>Acme</ens:Name><ens:NumberOfEmployees>12</ens:NumberOfEmployees></urn:sObjects>\
               <urn:sObjects><ens:type>Contact</ens:type><ens:Id xsi:nil=\"true\"/><ens:LastName>Smith</ens:LastName></urn:sObjects>\
             </urn:create>",
        ),
        "create",
    );
    valid(
        w,
        &env(
            P,
            "<urn:update><urn:sObjects><ens:type>Opportunity</ens:type><ens:fieldsToNull>Description</ens:fieldsToNull>\
             <ens:Id>006000000000001AAA</ens:Id><ens:StageName>Closed Won</ens:StageName></urn:sObjects></urn:update>",
        ),
        "update",
    );
    valid(
        w,
        &env(
            P,
            "<urn:upsert><urn:externalIDFieldName>Ext__c</urn:externalIDFieldName>\
             <urn:sObjects><ens:type>Account</ens:type><ens:Id xsi:nil=\"true\"/><ens:Ext__c>42</ens:Ext__c></urn:sObjects></urn:upsert>",
        ),
        "upsert",
    );
    valid(
        w,
        &env(
            P,
            "<urn:describeSObjects><urn:sObjectType>Account</urn:sObjectType><urn:sObjectType>Contact</urn:sObjectType></urn:describeSObjects>",
        ),
        "describeSObjects",
    );
    valid(
        w,
        &env(
            P,
            "<urn:retrieve><urn:fieldList>Id,Name</urn:fieldList><urn:sObjectType>Account</urn:sObjectType><urn:ids>001000000000001AAA</urn:ids></urn:retrieve>",
        ),
        "retrieve",
    );
}

#[test]
fn partner_wrong_requests_name_path_and_rule() {
    let w = partner();
    invalid(w, &env(P, "<urn:query/>"), "Body/query: missing required element queryString");
    invalid(
        w,
        &env(P, "<urn:login><urn:password>pw</urn:password><urn:username>u</urn:username></urn:login>"),
        "Body/login: missing required element username",
    );
    invalid(
        w,
        &env(P, "<urn:query><urn:queryString>x</urn:queryString><urn:limit>5</urn:limit></urn:query>"),
        "Body/query: unexpected element 'limit'",
    );
    invalid(
        w,
        &env(P, r#"<urn:query><urn:queryString xsi:nil="true"/></urn:query>"#),
        "Body/query/queryString: is not nillable",
    );
    let many: String = (0..101).map(|i| format!("<urn:sObjectType>T{i}</urn:sObjectType>")).collect();
    invalid(
        w,
        &env(P, &format!("<urn:describeSObjects>{many}</urn:describeSObjects>")),
        "Body/describeSObjects: element sObjectType occurs more than 100 times",
    );
    invalid(
        w,
        &env(
            P,
            "<urn:update><urn:sObjects><ens:type>Account</ens:type><ens:Id>001XYZ</ens:Id></urn:sObjects><urn:sObjects><ens:type>Account</ens:type><ens:Id>001 bad id 0000AAA</ens:Id></urn:sObjects></urn:update>",
        ),
        "Body/update/sObjects[1]/Id: '001XYZ' does not match pattern [a-zA-Z0-9]{18}",
    );
    invalid(
        w,
        &env(P, "<urn:query><urn:queryString><b>x</b></urn:queryString></urn:query>"),
        "Body/query/queryString: element 'b' is not allowed in a simple value",
    );
    invalid(
        w,
        &env(P, "<urn:query>text<urn:queryString>x</urn:queryString></urn:query>"),
        "Body/query: text is not allowed among child elements",
    );
}

#[test]
fn lax_and_off_modes() {
    let w = partner();
    let no_id = env(
        P,
        "<urn:create><urn:sObjects><ens:type>Account</ens:type><ens:Name>Acme</ens:Name></urn:sObjects></urn:create>",
    );
    invalid(w, &no_id, "Body/create/sObjects[1]: missing required element Id");
    // Salesforce accepts a create without the nillable Id; lax does too.
    assert_eq!(run(w, &no_id, Mode::Lax, None), Ok("create".into()));
    let extra = env(P, "<urn:query><urn:queryString>x</urn:queryString><urn:limit>5</urn:limit></urn:query>");
    assert_eq!(run(w, &extra, Mode::Lax, None), Ok("query".into()));
    invalid_with(
        w,
        &env(P, "<urn:query><urn:queryString xsi:nil=\"true\"/></urn:query>"),
        Mode::Lax,
        None,
        "is not nillable",
    );
    assert_eq!(run(w, &env(P, "<urn:query/>"), Mode::Off, None), Ok("query".into()));
    invalid_with(w, &env(P, "<urn:launch/>"), Mode::Off, None, "is not an operation of this service's WSDL");
}

// === enterprise WSDL: typed sObjects through xsi:type ===

#[test]
fn xsi_attributes_are_known_by_namespace_not_prefix() {
    let w = enterprise();
    // The XML Schema instance namespace under another prefix, declared on the tag that uses it.
    valid(
        w,
        &env(
            E,
            r#"<urn:create><urn:sObjects xmlns:i="http://www.w3.org/2001/XMLSchema-instance" i:type="ens:Account"><ens:Id i:nil="true"/><ens:NumberOfEmployees>12</ens:NumberOfEmployees></urn:sObjects></urn:create>"#,
        ),
        "create",
    );
    invalid(
        w,
        &env(
            E,
            r#"<urn:create><urn:sObjects xmlns:i="http://www.w3.org/2001/XMLSchema-instance" i:type="ens:Account"><ens:Id i:nil="true"/><ens:LastName>x</ens:LastName></urn:sObjects></urn:create>"#,
        ),
        "Body/create/sObjects[1]: unexpected element 'LastName'",
    );
    // `xsi` bound to another namespace: its `type` is an ordinary attribute, which sObject lacks.
    invalid(
        w,
        &env(
            E,
            r#"<urn:create><urn:sObjects xmlns:xsi="urn:not-schema-instance" xsi:type="ens:Account"><ens:Id>001000000000001AAA</ens:Id></urn:sObjects></urn:create>"#,
        ),
        "Body/create/sObjects[1]: attribute 'type' is not allowed",
    );
}

#[test]
fn enterprise_typed_sobjects() {
    let w = enterprise();
    valid(
        w,
        &env(
            E,
            r#"<urn:create>
                 <urn:sObjects xsi:type="ens:Account"><ens:Id xsi:nil="true"/><ens:Name>Acme</ens:Name><ens:NumberOfEmployees>12</ens:NumberOfEmployees></urn:sObjects>
                 <urn:sObjects xsi:type="ens:Contact"><ens:Id xsi:nil="true"/><ens:Email>s@x.com</ens:Email><ens:LastName>Smith</ens:LastName></urn:sObjects>
               </urn:create>"#,
        ),
        "create",
    );
    valid(
        w,
        &env(
            E,
            r#"<urn:update><urn:sObjects xsi:type="ens:Case"><ens:Id>500000000000001AAA</ens:Id><ens:Status>Closed</ens:Status></urn:sObjects></urn:update>"#,
        ),
        "update",
    );
    valid(
        w,
        &env(
            E,
            r#"<urn:upsert><urn:externalIDFieldName>Ext__c</urn:externalIDFieldName><urn:sObjects xsi:type="ens:Lead"><ens:Id xsi:nil="true"/><ens:Company>Acme</ens:Company></urn:sObjects></urn:upsert>"#,
        ),
        "upsert",
    );
    valid(w, &env(E, "<urn:query><urn:queryString>SELECT Id FROM Contact</urn:queryString></urn:query>"), "query");
    valid(w, &env(E, "<urn:queryMore><urn:queryLocator>01g-2000</urn:queryLocator></urn:queryMore>"), "queryMore");
    valid(
        w,
        &env(E, "<urn:describeSObjects><urn:sObjectType>Case</urn:sObjectType></urn:describeSObjects>"),
        "describeSObjects",
    );
    valid(w, &env(E, "<urn:login><urn:username>u</urn:username><urn:password>p</urn:password></urn:login>"), "login");

    invalid(
        w,
        &env(
            E,
            r#"<urn:create><urn:sObjects xsi:type="ens:Account"><ens:Id xsi:nil="true"/><ens:NumberOfEmployees>twelve</ens:NumberOfEmployees></urn:sObjects></urn:create>"#,
        ),
        "Body/create/sObjects[1]/NumberOfEmployees: 'twelve' is not an integer",
    );
    invalid(
        w,
        &env(
            E,
            r#"<urn:create><urn:sObjects xsi:type="ens:Account"><ens:Id xsi:nil="true"/><ens:LastName>x</ens:LastName></urn:sObjects></urn:create>"#,
        ),
        "Body/create/sObjects[1]: unexpected element 'LastName'",
    );
    invalid(
        w,
        &env(E, r#"<urn:create><urn:sObjects xsi:type="urn:QueryResult"/></urn:create>"#),
        "xsi:type 'urn:QueryResult' is not derived from the declared type sObject",
    );
    invalid(
        w,
        &env(E, r#"<urn:create><urn:sObjects xsi:type="ens:Spaceship"/></urn:create>"#),
        "xsi:type 'ens:Spaceship' is not a type of this schema",
    );
    invalid(
        w,
        &env(
            E,
            r#"<urn:create><urn:sObjects xsi:type="ens:Account"><ens:Id xsi:nil="true"/><ens:CreatedDate>yesterday</ens:CreatedDate></urn:sObjects></urn:create>"#,
        ),
        "CreatedDate: 'yesterday' is not a valid dateTime",
    );
    // The same `xsi:type` text on the next record is judged again where its prefix is bound
    // elsewhere: the second record's `ens` names another namespace.
    invalid(
        w,
        &env(
            E,
            r#"<urn:create><urn:sObjects xsi:type="ens:Account"><ens:Id xsi:nil="true"/></urn:sObjects><urn:sObjects xmlns:ens="urn:partner.soap.sforce.com" xsi:type="ens:Account"/></urn:create>"#,
        ),
        "Body/create/sObjects[2]: xsi:type 'ens:Account' is not a type of this schema",
    );
    // And a record naming the type the one before it named, where that type is not allowed.
    invalid(
        w,
        &env(
            E,
            r#"<urn:create><urn:sObjects xsi:type="ens:Account"><ens:Id xsi:nil="true"/></urn:sObjects><urn:sObjects xsi:type="ens:Account"><ens:Id xsi:nil="true"/><ens:Email>x</ens:Email></urn:sObjects></urn:create>"#,
        ),
        "Body/create/sObjects[2]: unexpected element 'Email'",
    );
}

// === one construct of each rule ===

fn order(inner: &str) -> String {
    format!(
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:t="urn:rules"><s:Body><t:order>{inner}</t:order></s:Body></s:Envelope>"#
    )
}

const ACTION: Option<&str> = Some("urn:rules:order");

#[track_caller]
fn order_ok(inner: &str) {
    assert_eq!(run(rules(), &order(inner), Mode::Strict, ACTION), Ok("order".to_owned()));
}

#[track_caller]
fn order_bad(inner: &str, says: &str) {
    invalid_with(rules(), &order(inner), Mode::Strict, ACTION, says);
}

const BASE: &str = "<t:code>ABC-12</t:code><t:name>n</t:name><t:byMail>true</t:byMail>";

#[test]
fn each_rule_accepts_and_refuses() {
    order_ok(BASE);
    order_ok(&format!(
        r#"{BASE}<t:options><t:discount>12.5</t:discount><t:colour>red</t:colour></t:options>
           <t:shape id="1"><t:label>a</t:label></t:shape><t:shape id="2" xsi:type="t:Circle"><t:label>c</t:label><t:radius>2.5E0</t:radius></t:shape>
           <t:price currency="green">9.99</t:price><t:when>2026-11-22T07:00:00Z</t:when><t:day>2026-11-22</t:day><t:blob>aGVsbG8=</t:blob>
           <t:note><anything><at all="1"/></anything></t:note><x:extra xmlns:x="urn:other"><whatever/></x:extra>"#
    ));
    order_ok("<t:code>ABC-12</t:code><t:name xsi:nil=\"true\"/><t:byPhone>5551234</t:byPhone>");
    // pattern, maxLength, enumeration, bounds
    order_bad(
        "<t:code>abc-12</t:code><t:name>n</t:name><t:byMail>true</t:byMail>",
        "Body/order/code: 'abc-12' does not match pattern [A-Z]{3}-[0-9]{2}",
    );
    order_bad(
        "<t:code>ABC-12</t:code><t:name>abcdefghijk</t:name><t:byMail>true</t:byMail>",
        "Body/order/name: exceeds maxLength 10 (length 11)",
    );
    order_bad(
        &format!("{BASE}<t:options><t:colour>blue</t:colour></t:options>"),
        "Body/order/options/colour: 'blue' is not one of the allowed values (red, green)",
    );
    order_bad(
        &format!("{BASE}<t:options><t:colour>red</t:colour><t:discount>101</t:discount></t:options>"),
        "discount: 101 is above maxInclusive 100",
    );
    // simple types
    order_bad(
        "<t:code>ABC-12</t:code><t:name>n</t:name><t:byMail>yes</t:byMail>",
        "Body/order/byMail: 'yes' is not a valid boolean",
    );
    order_bad(
        "<t:code>ABC-12</t:code><t:name>n</t:name><t:byPhone>12x</t:byPhone>",
        "Body/order/byPhone: '12x' is not an integer",
    );
    order_bad(&format!("{BASE}<t:when>yesterday</t:when>"), "Body/order/when: 'yesterday' is not a valid dateTime");
    order_bad(&format!("{BASE}<t:day>2026-13-01</t:day>"), "Body/order/day: '2026-13-01' is not a valid date");
    order_bad(&format!("{BASE}<t:blob>!!!</t:blob>"), "Body/order/blob: '!!!' is not a valid base64Binary");
    order_bad(&format!("{BASE}<t:price>cheap</t:price>"), "Body/order/price: 'cheap' is not a valid decimal");
    // choice
    order_bad(
        "<t:code>ABC-12</t:code><t:name>n</t:name>",
        "Body/order: missing required element (one of: byMail, byPhone)",
    );
    order_bad(&format!("{BASE}<t:byPhone>1</t:byPhone>"), "Body/order: unexpected element 'byPhone'");
    // all
    order_bad(
        &format!("{BASE}<t:options><t:discount>1</t:discount></t:options>"),
        "Body/order/options: missing required element colour",
    );
    order_bad(
        &format!("{BASE}<t:options><t:colour>red</t:colour><t:colour>red</t:colour></t:options>"),
        "Body/order/options: element colour may appear only once",
    );
    // sequence order, maxOccurs
    order_bad(
        "<t:name>n</t:name><t:code>ABC-12</t:code><t:byMail>true</t:byMail>",
        "Body/order: missing required element code",
    );
    let shapes: String = (1..=4).map(|i| format!(r#"<t:shape id="{i}"><t:label>s</t:label></t:shape>"#)).collect();
    order_bad(&format!("{BASE}{shapes}"), "Body/order: element shape occurs more than 3 times");
    // attributes
    order_bad(
        &format!("{BASE}<t:shape><t:label>s</t:label></t:shape>"),
        "Body/order/shape[1]: missing required attribute 'id'",
    );
    // The same inside a flat sequence (`Drawing`), where the usual element is matched apart.
    order_ok(&format!(
        r#"{BASE}<t:drawing><t:shape id="1"><t:label>s</t:label></t:shape><t:title>t</t:title><t:caption>{}</t:caption></t:drawing>"#,
        "c".repeat(40)
    ));
    order_bad(
        &format!("{BASE}<t:drawing><t:shape><t:label>s</t:label></t:shape></t:drawing>"),
        "Body/order/drawing/shape[1]: missing required attribute 'id'",
    );
    order_bad(
        &format!(
            r#"{BASE}<t:drawing><t:shape id="1"><t:label>s</t:label></t:shape><t:title>too long a title</t:title></t:drawing>"#
        ),
        "Body/order/drawing/title: exceeds maxLength 10",
    );
    order_bad(
        &format!(r#"{BASE}<t:shape id="x"><t:label>s</t:label></t:shape>"#),
        "Body/order/shape[1]: attribute 'id': 'x' is not an integer",
    );
    order_bad(
        &format!(r#"{BASE}<t:shape id="1" colour="red"><t:label>s</t:label></t:shape>"#),
        "Body/order/shape[1]: attribute 'colour' is not allowed",
    );
    order_bad(
        &format!(r#"{BASE}<t:price currency="blue">1</t:price>"#),
        "Body/order/price: attribute 'currency': 'blue' is not one of the allowed values",
    );
    // extension and xsi:type
    order_bad(
        &format!(r#"{BASE}<t:shape id="1" xsi:type="t:Circle"><t:label>c</t:label></t:shape>"#),
        "Body/order/shape[1]: missing required element radius",
    );
    order_bad(
        &format!(r#"{BASE}<t:shape id="1" xsi:type="t:Other"><t:x>c</t:x></t:shape>"#),
        "xsi:type 't:Other' is not derived from the declared type Shape",
    );
    // wildcards: ##other takes other namespaces only
    order_bad(&format!("{BASE}<t:extra/>"), "Body/order: unexpected element 'extra'");
    // nillable
    order_bad(
        "<t:code xsi:nil=\"true\"/><t:name>n</t:name><t:byMail>true</t:byMail>",
        "Body/order/code: is not nillable",
    );
}

#[test]
fn soap_action_and_versions() {
    let w = rules();
    let body = order(BASE);
    invalid_with(
        w,
        &body,
        Mode::Strict,
        None,
        "operation 'order' requires SOAPAction 'urn:rules:order', but the request names none",
    );
    invalid_with(w, &body, Mode::Strict, Some("urn:rules:cancel"), "but the request names 'urn:rules:cancel'");
    let v12 = body.replace("http://schemas.xmlsoap.org/soap/envelope/", "http://www.w3.org/2003/05/soap-envelope");
    // SOAP 1.2's action parameter is optional, but must match when given.
    assert_eq!(run(w, &v12, Mode::Strict, None), Ok("order".into()));
    assert_eq!(run(w, &v12, Mode::Strict, ACTION), Ok("order".into()));
    invalid_with(w, &v12, Mode::Strict, Some("urn:x"), "requires SOAPAction 'urn:rules:order'");
    let rpc = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:c="urn:rules:calc"><s:Body><c:add><a>1</a><b>2</b></c:add></s:Body></s:Envelope>"#;
    assert_eq!(run(w, rpc, Mode::Strict, None), Ok("add".into()));
    invalid(w, &rpc.replace("<a>1</a>", "<a>one</a>"), "Body/add/a: 'one' is not an integer");
    invalid(w, &rpc.replace("<a>1</a><b>2</b>", "<b>2</b><a>1</a>"), "Body/add: missing required element a");
    let rpc12 = rpc.replace("http://schemas.xmlsoap.org/soap/envelope/", "http://www.w3.org/2003/05/soap-envelope");
    invalid(w, &rpc12, "SOAP 1.2 envelope, but the WSDL binds operation 'add' only over SOAP 1.1");
}

#[test]
fn must_understand_headers() {
    let w = rules();
    let with_header = |h: &str| order(BASE).replace("<s:Body>", &format!("<s:Header>{h}</s:Header><s:Body>"));
    let known = with_header(r#"<t:Auth s:mustUnderstand="1"><t:token>x</t:token></t:Auth>"#);
    assert_eq!(run(w, &known, Mode::Strict, ACTION), Ok("order".into()));
    let unknown = with_header(r#"<w:Security xmlns:w="urn:wsse" s:mustUnderstand="true"/>"#);
    let fault = run(w, &unknown, Mode::Strict, ACTION).unwrap_err();
    assert!(fault.contains("<faultcode>soapenv:MustUnderstand</faultcode>"), "{fault}");
    assert!(fault.contains("header {urn:wsse}Security is marked mustUnderstand"), "{fault}");
    // Not marked: passed along.
    let optional = with_header(r#"<w:Security xmlns:w="urn:wsse"/>"#);
    assert_eq!(run(w, &optional, Mode::Strict, ACTION), Ok("order".into()));
}

#[test]
fn every_shared_wsdl_loads_or_says_why() {
    let dir = manifest_dir().join("wsdl");
    let mut loaded = Vec::new();
    for path in [
        "salesforce-partner-v58.wsdl",
        "salesforce-enterprise-v40.wsdl",
        "economic.wsdl",
        "interhome.wsdl",
        "zeep/claim.wsdl",
        "zeep/soap.wsdl",
        "zeep/soap_header.wsdl",
        "zeep/soap_import_main.wsdl",
    ] {
        let w = Wsdl::load(&dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(!w.operations.is_empty(), "{path}");
        loaded.push((path, w.operations.len()));
    }
    assert!(loaded.contains(&("economic.wsdl", 3022)), "{loaded:?}");
    // An imported fragment with no binding of its own: a clear refusal, not a panic.
    let err = Wsdl::load(&dir.join("zeep/soap_import_2.wsdl")).unwrap_err().to_string();
    assert!(err.contains("declares no SOAP 1.1 or SOAP 1.2 binding"), "{err}");
    // rpc/encoded loads; its bodies are known but not checked.
    let claim = Wsdl::load(&dir.join("zeep/claim.wsdl")).unwrap();
    assert_eq!(claim.operations[0].input, oauth_egress::soap::wsdl::Input::Unchecked);
    let missing = Wsdl::load(Path::new("/nonexistent.wsdl")).unwrap_err().to_string();
    assert!(missing.contains("cannot open"), "{missing}");
}
