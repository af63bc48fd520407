//! The enterprise `create` envelope the envelope and e2e benches send.

/// An enterprise-WSDL `create` of `records` typed Account records (about 585 bytes each).
pub fn create_envelope(records: usize) -> String {
    let mut s = String::from(concat!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" "#,
        r#"xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:urn="urn:enterprise.soap.sforce.com" "#,
        r#"xmlns:ens="urn:sobject.enterprise.soap.sforce.com"><soapenv:Header><urn:SessionHeader>"#,
        r#"<urn:sessionId>alice@corp.example.com</urn:sessionId></urn:SessionHeader></soapenv:Header><soapenv:Body><urn:create>"#
    ));
    for i in 0..records {
        s.push_str(&format!(
            concat!(
                r#"<urn:sObjects xsi:type="ens:Account"><ens:Id xsi:nil="true"/><ens:AnnualRevenue>1250000.5</ens:AnnualRevenue>"#,
                "<ens:BillingCity>Zürich</ens:BillingCity><ens:CreatedDate>2026-11-22T07:00:00.000Z</ens:CreatedDate>",
                "<ens:Description>Customer {i}, imported from the ERP by the nightly batch &amp; checked.</ens:Description>",
                "<ens:Industry>Manufacturing</ens:Industry><ens:IsDeleted>false</ens:IsDeleted><ens:Name>Acme {i} AG</ens:Name>",
                "<ens:NumberOfEmployees>{i}</ens:NumberOfEmployees><ens:Phone>+41 44 000 00 00</ens:Phone>",
                "<ens:Website>https://acme{i}.example.com</ens:Website></urn:sObjects>"
            ),
            i = i
        ));
    }
    s.push_str("</urn:create></soapenv:Body></soapenv:Envelope>");
    s
}
