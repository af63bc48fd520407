//! The `oauth-egress` binary: `check` reports every config error with file and line and exits 64;
//! `check` passes a good config; `demo` runs the whole pipeline.
// A panic in a test is a failed test: unwrap freely here.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;

use support::*;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_oauth-egress"))
}

#[test]
fn check_lists_every_error_with_its_line_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    copy_wsdls(dir.path());
    write_private(&dir.path().join("bad.key"), "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n");
    std::fs::write(
        dir.path().join("broken.wsdl"),
        "<definitions xmlns=\"http://schemas.xmlsoap.org/wsdl/\"><oops></definitions>",
    )
    .unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        r#"[[providers]]
name = "sf"
token_url = "https://login.salesforce.com/services/oauth2/token"
client_id = "x"
audience = "https://login.salesforce.com"
private_key = "bad.key"

[[routes]]
name = "a"
path = "/a"
kind = "soap"
provider = "sf"
wsdl = "broken.wsdl"
upstream = "instance_url"
"#,
    )
    .unwrap();
    let out = bin().args(["check", "--config"]).arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let shown = config.display().to_string();
    assert!(stderr.contains(&format!("{shown}:6:15: private_key")), "{stderr}");
    assert!(stderr.contains("not an RSA private key"), "{stderr}");
    assert!(stderr.contains(&format!("{shown}:13:8: wsdl: ")), "{stderr}");
    assert!(stderr.contains("not well-formed XML"), "{stderr}");

    let missing = bin().args(["check", "--config", "/nonexistent/oauth-egress.toml"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/oauth-egress.toml: cannot read"));
}

#[test]
fn check_accepts_the_shipped_example_with_its_paths_in_place() {
    let dir = tempfile::tempdir().unwrap();
    copy_wsdls(dir.path());
    let example = std::fs::read_to_string(manifest_dir().join("config/oauth-egress.toml")).unwrap();
    // The example reads the WSDL the package installs and its key as a systemd credential;
    // here both sit next to the config.
    let text = example.replace("/usr/share/oauth-egress/wsdl/", "wsdl/");
    write_private(&dir.path().join("salesforce.key"), &key_pem());
    let config = dir.path().join("oauth-egress.toml");
    std::fs::write(&config, text).unwrap();
    let out = bin().args(["check", "--config"]).arg(&config).env("CREDENTIALS_DIRECTORY", dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (1 providers, 2 routes)"));
}

#[test]
fn demo_walks_the_real_pipeline() {
    let out = bin().arg("demo").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("subject of the session: alice@corp.example.com.sandbox"), "{text}");
    assert!(text.contains("Authorization: Bearer 00DLOO…"), "{text}");
    assert!(text.contains("unmapped_subject"), "{text}");
    assert!(text.contains("token exchanges at the endpoint: 1"), "{text}");
    assert!(!text.contains("00DLOOPBACK0000001!"), "full tokens must not be printed: {text}");
}

#[test]
fn keys_readable_by_others_are_refused_and_systemd_credentials_are_found() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    copy_wsdls(dir.path());
    let creds = tempfile::tempdir().unwrap();
    write_private(&creds.path().join("salesforce.key"), &key_pem());
    let config = dir.path().join("c.toml");
    let text = |key: &str| {
        format!(
            "[[providers]]\nname = \"sf\"\ntoken_url = \"https://login.salesforce.com/services/oauth2/token\"\nclient_id = \"x\"\naudience = \"https://login.salesforce.com\"\nprivate_key = \"{key}\"\n\n[[routes]]\nname = \"r\"\npath = \"/r\"\nkind = \"rest\"\nprovider = \"sf\"\nupstream = \"instance_url\"\n"
        )
    };
    std::fs::write(dir.path().join("open.key"), key_pem()).unwrap();
    std::fs::set_permissions(dir.path().join("open.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&config, text("open.key")).unwrap();
    let out = bin().args(["check", "--config"]).arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is readable by others than its owner (mode 644)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // As systemd's LoadCredential= hands it over.
    std::fs::write(&config, text("credential:salesforce.key")).unwrap();
    let out =
        bin().args(["check", "--config"]).arg(&config).env("CREDENTIALS_DIRECTORY", creds.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn wsdl_lists_operations_or_says_why_not() {
    let out = bin().arg("wsdl").arg(manifest_dir().join("wsdl/interhome.wsdl")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("44 operations:"), "{text}");
    assert!(text.contains("service WebService port WebServiceSoap12"), "{text}");
    assert!(
        text.lines().any(|l| l.contains("Availability")
            && l.contains("SOAP 1.2")
            && l.contains("soapAction=\"http://www.interhome.com/webservice/Availability\"")
            && l.contains("input={http://www.interhome.com/webservice}Availability")),
        "{text}"
    );
    let bad = bin().arg("wsdl").arg(manifest_dir().join("wsdl/zeep/soap_import_2.wsdl")).output().unwrap();
    assert_eq!(bad.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("declares no SOAP 1.1 or SOAP 1.2 binding"));
}

#[test]
fn validate_prints_the_proxys_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("query.xml");
    std::fs::write(&good, query(ALICE)).unwrap();
    let wsdl = manifest_dir().join("wsdl/salesforce-partner-v58.wsdl");
    let out = bin().arg("validate").arg("--wsdl").arg(&wsdl).arg(&good).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "valid: query");

    // From standard input, a wrong one: the same fault the proxy answers with, exit 1.
    let mut child = bin()
        .arg("validate")
        .arg("--wsdl")
        .arg(&wsdl)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let bad = query(ALICE).replace("<urn:queryString>SELECT Id FROM Account</urn:queryString>", "");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), bad.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let fault = String::from_utf8_lossy(&out.stdout);
    assert!(fault.contains("<faultstring>Body/query: missing required element queryString</faultstring>"), "{fault}");
    // Lax and off are there for the same debugging.
    let off = bin().args(["validate", "--validation", "off", "--wsdl"]).arg(&wsdl).arg(&good).output().unwrap();
    assert!(off.status.success());
}
